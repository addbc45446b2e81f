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


# ------------------------------------------------ reuse only what the same settings made (issue 17)


@pytest.fixture(scope="module")
def other_policy_dir(tmp_path_factory):
    """A policy with the same architecture and other trained weights."""
    import torch

    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    bundle = build_policy_from_config(model, algo)
    with torch.no_grad():
        for _, param in bundle.trainable_named_parameters().items():
            param.add_(0.5)
    path = tmp_path_factory.mktemp("other")
    return str(save_policy(bundle, path, model, algo))


def _eval(out, policies, **kw):
    args = dict(tasks=["ind"], seeds=[0], episodes=4, out_dir=out, **TOY)
    args.update(kw)
    return evaluate(policies, **args)


@pytest.fixture(scope="module")
def finished_out(tmp_path_factory, policy_dir):
    """An --out holding one finished evaluation of A (4 episodes, sampling at T=0.6)."""
    out = tmp_path_factory.mktemp("finished")
    _eval(out, {"A": policy_dir})
    return out


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (dict(episodes=8), "--episodes 4 -> 8"),
        (dict(greedy=True), "--greedy/--temperature 'temperature=0.6' -> 'greedy'"),
        (dict(temperature=1.0), "'temperature=0.6' -> 'temperature=1.0'"),
        (dict(width=24), "--width 16 -> 24"),
        (dict(max_episode_steps=5), "--max-steps 6 -> 5"),
        (dict(other=True), "other policy files under the same label"),
    ],
)
def test_finished_groups_with_other_settings_are_refused(
    tmp_path, finished_out, policy_dir, other_policy_dir, change, needle
):
    import shutil

    from vla_torchrl.errors import UserError

    out = tmp_path / "out"
    shutil.copytree(finished_out, out)
    before = (out / "episodes.jsonl").read_text()
    path = other_policy_dir if change.pop("other", False) else policy_dir
    with pytest.raises(UserError) as info:
        _eval(out, {"A": path}, **change)
    message = str(info.value)
    assert needle in message and "A on ind seed 0" in message and "--out" in message
    assert (out / "episodes.jsonl").read_text() == before  # nothing appended or mixed


def test_same_settings_reuse_and_a_copied_policy_is_the_same(tmp_path, finished_out, policy_dir):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(policy_dir, copy)  # other path, other mtimes, same bytes
    shutil.copytree(finished_out, tmp_path / "out")
    before = (tmp_path / "out" / "episodes.jsonl").read_text()
    _eval(tmp_path / "out", {"A": str(copy)})
    assert (tmp_path / "out" / "episodes.jsonl").read_text() == before  # reused, not redone


def test_results_without_settings_are_refused(tmp_path, finished_out, policy_dir):
    import shutil

    from vla_torchrl.errors import UserError

    shutil.copytree(finished_out, tmp_path / "out")
    store = tmp_path / "out" / "episodes.jsonl"
    lines = [json.loads(line) for line in store.read_text().splitlines()]
    for rec in lines:
        rec.pop("settings", None)  # as an older version wrote them
    store.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(UserError, match="settings not recorded"):
        _eval(tmp_path / "out", {"A": policy_dir})


def test_other_policies_of_the_same_results_file_are_not_checked(
    tmp_path, finished_out, policy_dir
):
    import shutil

    shutil.copytree(finished_out, tmp_path / "out")
    _eval(tmp_path / "out", {"B": policy_dir}, episodes=2)  # A's groups are not this run's


@pytest.mark.parametrize(
    ("policies", "needle"),
    [
        (["A=p1", "A=p2"], "given twice"),
        ([("A", "p1"), ("A", "p2")], "given twice"),
        (["../../X=p"], "not a plain name"),
        (["..=p"], "not a plain name"),
        (["a/b=p"], "not a plain name"),
        (["=p"], "LABEL=DIR"),
    ],
)
def test_policy_labels_are_names_given_once(tmp_path, policies, needle):
    from vla_torchrl.errors import UserError

    with pytest.raises(UserError, match=needle):
        _eval(tmp_path / "out", policies)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_label_path_stays_inside_out(tmp_path, policy_dir):
    from vla_torchrl.errors import UserError

    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(UserError):
        _eval(out, [f"../../X={policy_dir}"], videos_per_task=1)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (dict(seeds=[-1]), "--seeds='-1'"),
        (dict(seeds=[0, 0]), "distinct"),
        (dict(temperature=float("nan")), "--temperature=nan"),
        (dict(num_envs=0), "--num-envs=0"),
        (dict(max_episode_steps=0), "--max-steps=0"),
        (dict(out_dir="/dev/null/x"), "--out='/dev/null/x' cannot be created"),
    ],
)
def test_bad_values_name_the_flag(tmp_path, policy_dir, change, needle):
    from vla_torchrl.errors import UserError

    with pytest.raises(UserError) as info:
        _eval(tmp_path, {"A": policy_dir}, **change)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_env_options_and_transforms_reach_the_eval_envs_and_key_the_results(tmp_path, policy_dir):
    """env.options / env.transforms were silently dropped by the eval (issue 16). Now they
    build the env (a toy option sets the frame size the videos show; a user transform marking
    every step a success makes every episode one), and they are part of each group's
    settings: a rerun without them into the same --out is refused, naming the key."""
    from vla_torchrl.errors import UserError

    def success(name):
        return [e["success"] for e in _episodes(tmp_path / name / "episodes.jsonl")]

    _eval(tmp_path / "plain", {"A": policy_dir}, episodes=8)
    assert not all(success("plain"))  # the tiny policy fails some episodes of the default
    _eval(tmp_path / "small", {"A": policy_dir}, episodes=8, env_options={"image_size": 8})
    for name, side in (("plain", 16), ("small", 8)):
        assert Image.open(tmp_path / name / "videos" / "A-ind-0.gif").size == (side, side)
    marked = [{"_target_": "tests.helpers.AlwaysSuccess"}]
    _eval(tmp_path / "marked", {"A": policy_dir}, episodes=8, transforms=marked)
    assert success("marked") == [True] * 8
    with pytest.raises(UserError, match=r"env\.options \{'image_size': 8\} -> None"):
        _eval(tmp_path / "small", {"A": policy_dir}, episodes=8)
    with pytest.raises(UserError, match=r"env\.transforms"):
        _eval(tmp_path / "marked", {"A": policy_dir}, episodes=8)


def test_each_finished_group_logs_a_progress_line_with_the_time_left(tmp_path, policy_dir, caplog):
    """Without a terminal the bar is off, and a long evaluation printed nothing (issue 16):
    each group now logs its success rate, the groups done and an estimate of the time left."""
    import logging
    import re

    with caplog.at_level(logging.INFO, logger="vla_torchrl"):
        _eval(tmp_path / "out", {"A": policy_dir}, seeds=[0, 1])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("eval ")]
    assert len(lines) == 2
    episodes = _episodes(tmp_path / "out" / "episodes.jsonl")
    for n, (line, seed) in enumerate(zip(lines, (0, 1)), start=1):
        rate = sum(e["success"] for e in episodes if e["seed"] == seed) / 4
        assert line.startswith(f"eval {n}/2: A on ind seed {seed}: success {rate:.2f} (4 episodes)")
        assert re.search(r"min so far, ~\d+\.\d min left$", line)
    assert lines[-1].endswith("~0.0 min left")


def test_a_policys_episodes_do_not_depend_on_the_policies_evaluated_before_it(tmp_path, policy_dir):
    """ManiSkill's CPU simulation carries contact state across resets, so a reused env gave a
    policy other sampled episodes after another policy than alone (measured: 2 of 8 episodes
    of a PPO policy differed). A new env per group makes each group's episodes a function of
    (policy, task, seed) only; ``fresh_env=False`` keeps one env per (task, seed). The stand-in
    for the contact state: a transform marking success during its env's first 12 steps."""
    young = [{"_target_": "tests.helpers.SuccessWhileYoung", "steps": 12}]

    def success_of_b(name, policies, fresh_env):
        _eval(tmp_path / name, policies, episodes=8, transforms=young, fresh_env=fresh_env)
        rows = _episodes(tmp_path / name / "episodes.jsonl")
        return [e["success"] for e in rows if e["policy"] == "B"]

    alone = success_of_b("alone", {"B": policy_dir}, True)
    after = success_of_b("after", {"A": policy_dir, "B": policy_dir}, True)
    assert alone == after == [True] * 8
    reused = success_of_b("reused", {"A": policy_dir, "B": policy_dir}, False)
    assert reused != alone and not all(reused)  # B saw the env A had aged
