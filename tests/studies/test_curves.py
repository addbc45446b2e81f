from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vla_torchrl.errors import UserError
from vla_torchrl.recipes.plot_curves import main
from vla_torchrl.studies.curves import aggregate, group_runs, load_curve, trailing_mean


def _write_run(run_dir, rows):
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def _runs(tmp_path):
    # seed 0: success = step / 1000; seed 1: success = step / 1000 + 0.2 (so mean +0.1, std 0.1)
    for seed, offset in ((0, 0.0), (1, 0.2)):
        rows = []
        for step in range(0, 600, 100):
            rows.append(
                {"step": step, "elapsed_s": 36.0 * step, "eval/success": step / 1000 + offset}
            )
            rows.append({"step": step, "elapsed_s": 36.0 * step, "train/episode_return": 1.0})
        _write_run(tmp_path / f"ppo-seed{seed}", rows)
    _write_run(
        tmp_path / "grpo-seed0",
        [{"step": s, "elapsed_s": float(s), "eval/success": 0.05} for s in range(0, 500, 50)],
    )


def test_load_and_aggregate_hand_computed(tmp_path):
    _runs(tmp_path)
    xs, ys = load_curve(tmp_path / "ppo-seed0", "eval/success")
    assert xs.tolist() == [0, 100, 200, 300, 400, 500]
    assert ys.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    curves = [load_curve(tmp_path / f"ppo-seed{s}", "eval/success") for s in (0, 1)]
    grid, mean, std = aggregate(curves, points=11)
    assert grid.tolist() == pytest.approx(list(np.linspace(0, 500, 11)))
    assert mean == pytest.approx(grid / 1000 + 0.1)
    assert std == pytest.approx(np.full(11, 0.1))
    wx, _ = load_curve(tmp_path / "ppo-seed0", "eval/success", x="wall_clock")
    assert wx[-1] == pytest.approx(36.0 * 500 / 3600)  # hours


def test_trailing_mean_matches_a_plain_loop(tmp_path):
    values = np.random.default_rng(0).random(23)
    for window in (1, 2, 5, 23, 40):
        expected = [sum(values[max(0, i - window + 1) : i + 1]) / (i + 1 - max(0, i - window + 1))
                    for i in range(len(values))]  # fmt: skip
        assert trailing_mean(values, window) == pytest.approx(expected)
    with pytest.raises(UserError, match="smooth=0"):
        trailing_mean(values, 0)
    _runs(tmp_path)  # seed 0: 0.0, 0.1, ..., 0.5; a window of 3 lags by one step of 0.1
    _, ys = load_curve(tmp_path / "ppo-seed0", "eval/success", smooth=3)
    assert ys.tolist() == pytest.approx([0.0, 0.05, 0.1, 0.2, 0.3, 0.4])


def test_aggregate_uses_common_range():
    a = (np.array([0.0, 100.0]), np.array([0.0, 1.0]))
    b = (np.array([50.0, 200.0]), np.array([1.0, 1.0]))
    grid, mean, _ = aggregate([a, b], points=2)
    assert grid.tolist() == [50.0, 100.0]
    assert mean.tolist() == pytest.approx([0.75, 1.0])


def test_group_runs(tmp_path):
    groups = group_runs([str(tmp_path / "ppo-seed0"), str(tmp_path / "ppo_seed1"), "X=a,b"])
    assert list(groups) == ["ppo", "X"] and len(groups["ppo"]) == 2


def test_cli_writes_a_real_png(tmp_path, capsys):
    _runs(tmp_path)
    out = tmp_path / "fig.png"
    runs = f"runs=[{tmp_path / 'ppo-seed0'},{tmp_path / 'ppo-seed1'}]"
    group = f"groups.GRPO=[{tmp_path / 'grpo-seed0'}]"
    assert main([runs, group, f"out={out}"]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[1] >= 900  # two panels (success and return)
    assert img.std() > 0 and len(np.unique(img.reshape(-1, 3), axis=0)) > 10
    extra = ["x=wall_clock", "metrics=[eval/success]", "hlines.SFT-16k=0.3"]
    assert main([runs, group, f"out={out}", *extra]) == 0
    capsys.readouterr()
    assert main([runs, f"out={out}", "+hlines.SFT=high"]) == 2
    assert "hlines.SFT='high' must be a number" in capsys.readouterr().err


def test_cli_deprecated_flags(tmp_path, capsys):
    _runs(tmp_path)
    out = tmp_path / "fig.png"
    args = [str(tmp_path / "ppo-seed0"), f"GRPO={tmp_path / 'grpo-seed0'}"]
    assert main([*args, "--out", str(out), "--hline", "SFT=0.3", "--metric", "eval/success"]) == 0
    err = capsys.readouterr().err
    assert "deprecated" in err and "groups={GRPO:[" in err and "hlines={SFT:0.3}" in err
    assert out.is_file()
    assert main([*args, "--out", str(out), "--hline", "SFT=high"]) == 2
    assert "LABEL=NUMBER" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    _runs(tmp_path)
    status = main([f"runs=[{tmp_path / 'ppo-seed0'}]", f"out={tmp_path / 'x.png'}",
                   "metrics=[nope/x]"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and "logged metrics: eval/success, train/episode_return" in err
    status = main([f"runs=[{tmp_path / 'missing'}]", f"out={tmp_path / 'x.png'}"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "does not exist" in err
    assert main([f"out={tmp_path / 'x.png'}"]) == 2
    assert "no run to plot" in capsys.readouterr().err
