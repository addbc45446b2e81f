from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from vla_torchrl.errors import UserError
from vla_torchrl.evaluation.report_writer import write_report
from vla_torchrl.evaluation.results import EpisodeResult, IncrementalResults, load_results
from vla_torchrl.evaluation.tables import (
    Stat,
    format_cell,
    read_summary_csv,
    relative_drops,
    summarize,
    table_markdown,
    write_summary_csv,
)
from vla_torchrl.recipes.report import main

# (policy, task) -> success count per seed (out of 4 episodes); grasp and continuous grasp = 4
# unless listed in _GRASP / _CONT.
_SUCCESS = {
    ("SFT", "ind"): (3, 3, 3),
    ("RL", "ind"): (4, 4, 3),
    ("SFT", "table"): (2, 2, 2),
    ("RL", "table"): (3, 3, 3),
    ("SFT", "noise-w"): (1, 1, 1),
    ("RL", "noise-w"): (2, 2, 2),
    ("SFT", "obj"): (0, 0, 0),
    ("RL", "obj"): (1, 2, 3),
    ("SFT", "obj-pos"): (2, 3, 4),
    ("RL", "obj-pos"): (4, 4, 4),
    ("SFT", "robot-pose"): (1, 1, 1),
    ("RL", "robot-pose"): (4, 4, 4),
}
_CONT = {("SFT", "ind"): (4, 3, 4)}


def _records():
    rows = []
    for (policy, task), succ in _SUCCESS.items():
        cont = _CONT.get((policy, task), (4, 4, 4))
        for seed in range(3):
            for ep in range(4):
                rows.append(
                    EpisodeResult(
                        policy, task, seed, 100 + ep, True, ep < cont[seed], ep < succ[seed]
                    )
                )
    return rows


def test_summary_against_hand_computed_values():
    s = summarize(_records())
    # SFT/ind continuous grasp: per-seed 1, .75, 1 -> mean 11/12, population std sqrt(1/72)
    stat = s[("SFT", "ind")]["continuous_grasp"]
    assert stat.mean == pytest.approx(11 / 12)
    assert stat.std == pytest.approx(math.sqrt(1 / 72))
    assert stat.n_seeds == 3
    # RL/obj success: per-seed .25, .5, .75 -> mean .5, std sqrt(1/24)
    assert s[("RL", "obj")]["success"].mean == pytest.approx(0.5)
    assert s[("RL", "obj")]["success"].std == pytest.approx(math.sqrt(1 / 24))
    assert s[("SFT", "obj")]["success"] == Stat(0.0, 0.0, 3)
    # sample std on request: sqrt(((-.25)^2 + 0 + .25^2) / 2) = .25
    assert summarize(_records(), ddof=1)[("RL", "obj")]["success"].std == pytest.approx(0.25)


def test_relative_drops_hand_computed():
    drops = relative_drops(summarize(_records()))
    assert drops[("SFT", "table")] == pytest.approx((0.5 - 0.75) / 0.75)
    assert drops[("RL", "table")] == pytest.approx(-2 / 11)
    assert drops[("RL", "noise-w")] == pytest.approx(-5 / 11)
    assert ("RL", "ind") not in drops


def test_format_cell_like_the_paper():
    assert format_cell(Stat(0.921875, 0.01276, 3)) == "0.922 (.013)"
    assert format_cell(Stat(0.5, 0.0, 3)) == "0.500 (.000)"
    assert format_cell(Stat(1.0, 0.0, 1)) == "1.000 (.000)"


def test_table_text_and_bold():
    text = table_markdown(summarize(_records()), tasks=["ind", "table"])
    header, _, ind_row, table_row = text.splitlines()
    assert header.split(" | ")[1:3] == ["Acc. SFT", "Acc. RL"]
    cells = [c.strip() for c in ind_row.strip("|").split("|")]
    # Task | Acc SFT | Acc RL | Cont SFT | Cont RL | Suc SFT | Suc RL
    assert cells == [
        "IND",
        "**1.000 (.000)**",
        "**1.000 (.000)**",  # a tie: both bold
        "0.917 (.118)",
        "**1.000 (.000)**",
        "0.750 (.000)",
        "**0.917 (.118)**",
    ]
    assert table_row.split("|")[1].strip() == "Table"


def test_results_file_round_trips(tmp_path):
    rows = _records()
    path = tmp_path / "episodes.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(EpisodeResult.__dataclass_fields__))
        writer.writeheader()
        for r in rows:
            writer.writerow(r.__dict__)
    assert load_results(path) == rows
    jsonl = tmp_path / "episodes.jsonl"
    jsonl.write_text("\n".join(json.dumps(r.__dict__) for r in rows))
    assert load_results(jsonl) == rows
    with pytest.raises(UserError, match="lacks success"):
        load_results(
            [
                {
                    "policy": "a",
                    "task": "ind",
                    "seed": 0,
                    "episode_id": 0,
                    "grasped": 1,
                    "continuous_grasp": 1,
                }
            ]
        )
    with pytest.raises(UserError, match="not a boolean"):
        load_results([dict(rows[0].__dict__, success="maybe")])


def test_summary_csv_round_trip(tmp_path):
    s = summarize(_records())
    path = write_summary_csv(s, tmp_path / "summary.csv")
    assert read_summary_csv(path) == s


def _assert_not_blank(path):
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 0
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10


def test_write_report(tmp_path):
    files = write_report(_records(), tmp_path / "report")
    md = files["report.md"].read_text()
    for title in ("Table 1: Vision", "Table 2: Semantics", "Table 3: Execution"):
        assert title in md
    assert "| Obj. Pos. |" in md and "| Robot Pose |" in md
    # Vision axis: SFT success (.5 + .25) / 2, RL (.75 + .5) / 2; drops -50.0% and -7/22
    assert "| Vision | 0.375 | 0.625 | -50.0% | -31.8% |" in md
    for name in ("radar_success.png", "radar_ood_ind_ratio.png", "bars_success.png"):
        _assert_not_blank(files[name])
    with open(files["table_vision.csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["task"] for r in table] == ["IND", "Table", "Noise-w"]
    assert float(table[0]["Suc. RL mean"]) == pytest.approx(11 / 12, abs=1e-6)
    with open(files["drops.csv"], newline="") as fh:
        drops = {(r["policy"], r["task"]): float(r["relative_drop"]) for r in csv.DictReader(fh)}
    assert drops[("SFT", "noise-w")] == pytest.approx(-2 / 3)
    with pytest.raises(UserError, match="no episode results"):
        write_report([], tmp_path / "empty")


def test_ind_only_report_shows_the_ind_table(tmp_path):
    ind = [r for r in _records() if r.task == "ind"]
    files = write_report(ind, tmp_path / "report")
    md = files["report.md"].read_text()
    assert "## In-distribution" in md and "Summary by axis" not in md
    with open(files["table_ind.csv"], newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["task"] == "IND"
    assert float(row["Suc. RL mean"]) == pytest.approx(11 / 12, abs=1e-6)  # as in the full report


def test_incremental_results_survive_interruption(tmp_path):
    store = IncrementalResults(tmp_path / "eval" / "episodes.jsonl")
    rows = _records()

    def episodes(policy, task, seed):
        return [
            {k: getattr(r, k) for k in ("episode_id", "grasped", "continuous_grasp", "success")}
            for r in rows
            if (r.policy, r.task, r.seed) == (policy, task, seed)
        ]

    store.append_group("RL", "ind", 0, episodes("RL", "ind", 0))
    store.append_group("RL", "ind", 1, episodes("RL", "ind", 1))
    # interrupted while writing seed 2: two episode lines and half a third, no completion line
    with open(store.path, "a") as fh:
        for ep in episodes("RL", "ind", 2)[:2]:
            row = {"kind": "episode", "attempt": "dead", "policy": "RL", "task": "ind", "seed": 2}
            fh.write(json.dumps({**row, **ep}) + "\n")
        fh.write('{"kind": "episode", "attem')
    assert store.completed() == {("RL", "ind", 0), ("RL", "ind", 1)}
    assert not store.is_complete("RL", "ind", 2)
    assert len(store.results()) == 8
    # resume: only the missing group is evaluated again
    store.append_group("RL", "ind", 2, episodes("RL", "ind", 2))
    got = store.results()
    expected = [r for r in rows if (r.policy, r.task) == ("RL", "ind")]
    assert sorted(got, key=lambda r: (r.seed, r.episode_id)) == expected
    assert load_results(store.path) == got
    assert summarize(got)[("RL", "ind")]["success"].mean == pytest.approx(11 / 12)


def test_report_cli(tmp_path, capsys):
    path = tmp_path / "episodes.jsonl"
    path.write_text("\n".join(json.dumps(r.__dict__) for r in _records()))
    assert main([str(path), "--out", str(tmp_path / "out"), "--policies", "RL,SFT"]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| Task | Acc. RL | Acc. SFT |" in md
    axes = tmp_path / "axes.json"
    axes.write_text(json.dumps({"ind": "ind", "table": "vision", "obj": "semantics"}))
    assert main([str(path), "--out", str(tmp_path / "o2"), "--task-axes", str(axes)]) == 0
    md2 = (tmp_path / "o2" / "report.md").read_text()
    # tasks missing from the mapping are kept, under "Other"
    assert "Table 1: Vision" in md2 and "Table 2: Semantics" in md2
    other = md2.split("## Table 3: Other")[1].split("##")[0]
    assert "| Noise-w |" in other and "| Robot Pose |" in other and "| Table |" not in other
