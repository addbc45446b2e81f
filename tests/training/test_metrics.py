from __future__ import annotations

import json
import sys
import types

import pytest

from vla_torchrl.errors import UserError
from vla_torchrl.training.metrics import MetricLogger, read_metrics
from vla_torchrl.utils.logging import progress


def _run_segment(run_dir, steps, *, resume_step=None, crash_tail=False):
    log = MetricLogger(run_dir, resume_step=resume_step, tensorboard=False, wandb="off")
    for step in steps:
        log.log({"train/return": step / 10, "losses/policy": -step}, step=step)
    log.flush()
    if crash_tail:  # a crash mid-write leaves a partial line
        log._fh.write('{"step": 9999, "train/ret')
        log._fh.flush()
    log._fh.close()  # no close(): simulate the process dying


def test_resume_has_no_gaps_or_duplicates(tmp_path):
    # first segment logs steps 0..70; the checkpoint was taken at 40; crash afterwards
    _run_segment(tmp_path, range(0, 80, 10), crash_tail=True)
    # resume from the checkpoint at step 40 and continue to 100
    _run_segment(tmp_path, range(50, 110, 10), resume_step=40)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(0, 110, 10))
    assert [r["train/return"] for r in records] == [s / 10 for s in range(0, 110, 10)]
    # every line of the file is valid JSON (the partial line was removed)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 11 and all(json.loads(line) for line in lines)


def test_elapsed_carries_over(tmp_path):
    _run_segment(tmp_path, [10])
    path = tmp_path / "metrics.jsonl"
    rec = json.loads(path.read_text())
    rec["elapsed_s"] = 1000.0
    path.write_text(json.dumps(rec) + "\n")
    log = MetricLogger(tmp_path, resume_step=10, tensorboard=False, wandb="off")
    log.log({"perf/fps": 3.0}, step=20)
    log.close()
    assert read_metrics(tmp_path)[-1]["elapsed_s"] >= 1000.0


def test_existing_log_needs_resume(tmp_path):
    _run_segment(tmp_path, [0])
    with pytest.raises(UserError, match="resume"):
        MetricLogger(tmp_path, tensorboard=False, wandb="off")
    MetricLogger(tmp_path, resume_step=-1, tensorboard=False, wandb="off").close()
    assert read_metrics(tmp_path) == []


def test_namespaces_and_values(tmp_path):
    log = MetricLogger(tmp_path, tensorboard=False, wandb="off")
    for bad in ("success", "train/", "debug/x"):
        with pytest.raises(UserError, match="namespace"):
            log.log({bad: 1.0}, step=0)
    with pytest.raises(UserError, match="not a number"):
        log.log({"eval/x": "abc"}, step=0)
    log.log({"eval/success": 0.5, "perf/nan": float("nan")}, step=5)
    with pytest.raises(UserError, match="go back"):
        log.log({"eval/success": 0.5}, step=4)
    log.close()
    (rec,) = read_metrics(tmp_path)
    assert rec["eval/success"] == 0.5 and rec["perf/nan"] is None


def test_tensorboard_events_written_and_purged(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricLogger(tmp_path, tensorboard=True, wandb="off")
    for step in (1, 2, 3):
        log.log({"train/return": float(step)}, step=step)
    log.close()
    log = MetricLogger(tmp_path, resume_step=2, tensorboard=True, wandb="off")
    log.log({"train/return": 30.0}, step=3)
    log.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    events = acc.Scalars("train/return")
    assert [(e.step, e.value) for e in events] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_wandb_offline_by_default_and_optional(tmp_path, monkeypatch):
    calls = {}

    class _Run:
        def log(self, data, step):
            calls.setdefault("log", []).append((data, step))

        def finish(self):
            calls["finished"] = True

    fake = types.SimpleNamespace(init=lambda **kw: calls.update(init=kw) or _Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    log = MetricLogger(tmp_path, tensorboard=False, config={"seed": 1})
    log.log({"train/return": 1.0}, step=7)
    log.close()
    assert calls["init"]["mode"] == "offline" and calls["init"]["config"] == {"seed": 1}
    assert calls["log"] == [({"train/return": 1.0}, 7)] and calls["finished"]
    # the same run id is reused when resuming
    first_id = calls["init"]["id"]
    MetricLogger(tmp_path, resume_step=7, tensorboard=False).close()
    assert calls["init"]["id"] == first_id

    # wandb missing: offline degrades to a warning, online is an error
    monkeypatch.setitem(sys.modules, "wandb", None)
    MetricLogger(tmp_path / "b", tensorboard=False, wandb="offline").close()
    with pytest.raises(UserError, match="pip install wandb"):
        MetricLogger(tmp_path / "c", tensorboard=False, wandb="online")


def test_progress_counts_and_eta():
    import re

    bar = progress(100, initial=40, disable=False)
    bar.update(10)
    assert bar.n == 50 and bar.total == 100
    text = str(bar)
    bar.close()
    # "50.0/100 [00:01<00:01, ...]": elapsed < remaining (the ETA)
    assert "50.0/100" in text
    assert re.search(r"\[\d\d:\d\d<(\d\d:\d\d|\?)", text), text


def test_real_wandb_offline_writes_files_without_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    # nothing listens on port 9: a network attempt would fail or hang
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    log = MetricLogger(tmp_path / "run=1", tensorboard=False, wandb="offline")
    log.log({"train/return": 1.0}, step=1)
    log.close()
    runs = list((tmp_path / "run=1" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
