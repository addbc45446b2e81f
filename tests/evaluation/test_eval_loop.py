"""vla-torchrl-eval on the toy backend: outputs, identical repeat runs, resume, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
from vla_torchrl.evaluation.eval_loop import evaluate
from vla_torchrl.training.policy import build_policy_from_config, save_policy

TOY = dict(backend="toy", num_envs=4, max_episode_steps=6, width=16, height=16)


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    path = tmp_path_factory.mktemp("policy")
    return str(save_policy(build_policy_from_config(model, algo), path, model, algo))


def _episodes(path):
    return [r for r in map(json.loads, path.read_text().splitlines()) if "episode_id" in r]


def test_report_files_and_identical_repeats(tmp_path, policy_dir):
    runs = []
    for name in ("a", "b"):
        files = evaluate(
            {"RL": policy_dir, "SFT": policy_dir},
            tasks=["ind"],
            seeds=[0, 1],
            episodes=6,
            out_dir=tmp_path / name,
            **TOY,
        )
        runs.append(files)
    a, b = (tmp_path / n / "report" / "summary.csv" for n in ("a", "b"))
    assert a.read_text() == b.read_text()  # same checkpoint + seeds -> identical tables
    episodes = _episodes(tmp_path / "a" / "episodes.jsonl")
    assert len(episodes) == 2 * 2 * 6
    # every policy sees the same episode ids for a (task, seed)
    ids = {
        (r["policy"], r["seed"]): [
            e["episode_id"]
            for e in episodes
            if (e["policy"], e["seed"]) == (r["policy"], r["seed"])
        ]
        for r in episodes
    }
    assert ids[("RL", 0)] == ids[("SFT", 0)] and ids[("RL", 1)] == ids[("SFT", 1)]
    chart = Image.open(tmp_path / "a" / "report" / "bars_success.png").convert("L")
    assert len(set(chart.getdata())) > 2  # not a blank image
    assert (tmp_path / "a" / "videos" / "RL-ind-0.gif").is_file()


def test_interrupted_evaluation_continues_without_redoing_groups(tmp_path, policy_dir):
    evaluate({"RL": policy_dir}, tasks=["ind"], seeds=[0], episodes=4, out_dir=tmp_path, **TOY)
    first = (tmp_path / "episodes.jsonl").read_text()
    evaluate({"RL": policy_dir}, tasks=["ind"], seeds=[0, 1], episodes=4, out_dir=tmp_path, **TOY)
    second = (tmp_path / "episodes.jsonl").read_text()
    assert second.startswith(first)  # seed 0 kept, only seed 1 appended
    assert len(_episodes(tmp_path / "episodes.jsonl")) == 8


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["tasks=[nope]"], "nope"),
        (["episodes=0"], "episodes=0"),
        (["+policies.X=/nonexistent"], "/nonexistent"),
        # the deprecated --flag spelling still gives the same one-line error
        (["--backend", "toy", "--episodes", "0"], "episodes=0"),
    ],
)
def test_bad_input_exits_with_one_readable_line(tmp_path, policy_dir, args, needle):
    base = ["env.width=16", "env.height=16", f"out={tmp_path}"]
    if args[0].startswith("--"):
        base = ["--width", "16", "--height", "16", "--out", str(tmp_path)]
        base += ["--policy", f"RL={policy_dir}"]
    elif "+policies.X=/nonexistent" not in args:
        base += ["env=toy", f"policies.RL={policy_dir}"]
    else:
        base += ["env=toy"]
    result = subprocess.run(
        [sys.executable, "-m", "vla_torchrl.recipes.evaluate", *base, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert needle in result.stderr.strip().splitlines()[-1]
    if args[0].startswith("--"):
        assert "deprecated" in result.stderr.strip().splitlines()[0]


def test_cli_evaluates_and_writes_the_report(tmp_path, policy_dir):
    """The Hydra spelling end to end, two policies given as one quoted mapping."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vla_torchrl.recipes.evaluate",
            "env=toy",
            "env.width=16",
            "env.height=16",
            "env.max_episode_steps=4",
            f"policies={{SFT:'{policy_dir}',RL:'{policy_dir}'}}",
            "tasks=[ind]",
            "seeds=[0]",
            "episodes=2",
            "videos=0",
            f"out={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deprecated" not in result.stderr
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| Task | n | Acc. SFT | Acc. RL |" in md
    assert "## Paired comparison: RL vs SFT" in md
    assert len(_episodes(tmp_path / "episodes.jsonl")) == 2 * 2
