"""One config style for every command line (issue 13): Hydra overrides into typed, validated
dataclasses; the deprecated --flag spellings translate to the same overrides; the README's
command lines compose."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vla_torchrl.config.cli_schema import (
    DemoConfig,
    EvalConfig,
    PlotCurvesConfig,
    ReportConfig,
    StudyConfig,
    to_cli_config,
)
from vla_torchrl.errors import ConfigError
from vla_torchrl.recipes import demo, evaluate, plot_curves, report, study
from vla_torchrl.recipes._cli import compose_cli_config, hydra_quote

README = Path(__file__).resolve().parents[2] / "README.md"

TOOLS = {
    "eval": (EvalConfig, evaluate._legacy, ("policies",)),
    "report": (ReportConfig, report._legacy, ()),
    "study": (StudyConfig, study._prepare, ()),
    "plot_curves": (PlotCurvesConfig, plot_curves._legacy, ("groups", "hlines")),
    "demo": (DemoConfig, demo._legacy, ("maniskill_policies",)),
}


def _config(name: str, args: list[str]):
    cls, prepare, open_keys = TOOLS[name]
    return to_cli_config(cls, compose_cli_config(name, prepare(list(args)), open_keys=open_keys))


def test_eval_overrides_fill_the_typed_config():
    cfg = _config(
        "eval",
        ["env=toy", "policies.SFT=runs/sft/policy", "policies.RL=runs/ppo/policy",
         "seeds=[3,4]", "tasks=[ind]", "env.width=16", "greedy=true"],
    )  # fmt: skip
    assert cfg.policies == {"SFT": "runs/sft/policy", "RL": "runs/ppo/policy"}
    assert (cfg.env.backend, cfg.env.num_envs, cfg.env.width) == ("toy", 4, 16)
    assert (cfg.seeds, cfg.tasks, cfg.greedy, cfg.episodes) == ([3, 4], ["ind"], True, 16)
    # the mapping form says the same, and an entry can be replaced
    same = _config("eval", ["policies={SFT:runs/sft/policy,RL:x}", "policies.RL=runs/ppo/policy"])
    assert same.policies == cfg.policies
    # the defaults are the old command line's: ManiSkill 640x480, 80 steps, 4 envs, seeds 0,1,2
    base = _config("eval", ["policies.RL=p"])
    env = base.env
    assert (env.backend, env.width, env.height, env.max_episode_steps, env.num_envs) == (
        "maniskill", 640, 480, 80, 4
    )  # fmt: skip
    assert (base.seeds, base.temperature, base.videos, base.out) == ([0, 1, 2], 0.6, 1, "eval")


def test_deprecated_eval_flags_translate_to_the_same_overrides(capsys):
    old = ["--policy", "SFT=runs/sft/policy", "--policy", "RL=runs/a b/policy", "--tasks",
           "ind,table", "--seeds", "0,1", "--episodes", "8", "--backend", "toy", "--max-steps",
           "6", "--greedy", "--out", "eval-x"]  # fmt: skip
    new = evaluate._legacy(old)
    assert new == [
        "policies={SFT:'runs/sft/policy',RL:'runs/a b/policy'}",
        "tasks=['ind','table']",
        "seeds=[0,1]",
        "episodes=8",
        "env.backend='toy'",
        "env.max_episode_steps=6",
        "greedy=true",
        "out='eval-x'",
    ]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deprecated" in err and " ".join(new) in err
    cfg = _config("eval", old)
    assert cfg.policies == {"SFT": "runs/sft/policy", "RL": "runs/a b/policy"}
    assert (cfg.tasks, cfg.seeds, cfg.episodes, cfg.greedy) == (["ind", "table"], [0, 1], 8, True)
    assert (cfg.env.backend, cfg.env.max_episode_steps, cfg.out) == ("toy", 6, "eval-x")
    # the new spelling passes through untouched, with no deprecation line
    capsys.readouterr()
    assert evaluate._legacy(["policies.RL=x", "seeds=[0]"]) == ["policies.RL=x", "seeds=[0]"]
    assert capsys.readouterr().err == ""


def test_deprecated_policy_flag_given_twice_is_refused(capsys):
    """A mapping keeps only the last of two equal keys, so the translation refuses the repeat
    (as evaluate() refuses ["A=p1", "A=p2"])."""
    from vla_torchrl.errors import UserError

    with pytest.raises(UserError, match=r"--policy label 'A' is given twice \(A=p1 and A=p2\)"):
        evaluate._legacy(["--policy", "A=p1", "--policy", "B=p", "--policy", "A=p2"])
    capsys.readouterr()
    assert _config("eval", ["--policy", "A=p1", "--policy", "B=p2"]).policies == {
        "A": "p1",
        "B": "p2",
    }


def test_hydra_quote_round_trips_awkward_paths():
    for text in ("runs/it's here", "a,b=c [x]", "ends with \\", "plain"):
        cfg = _config("report", [f"results={hydra_quote(text)}", "out=x"])
        assert cfg.results == text


@pytest.mark.parametrize(
    ("name", "args", "phrase"),
    [
        ("eval", [], "no policy to evaluate"),
        ("eval", ["policies.RL=p", "episodes=0"], "episodes=0 must be >= 1"),
        ("eval", ["policies.RL=p", "seeds=[0,0]"], "seeds=[0, 0] has repeats"),
        ("eval", ["policies.RL=p", "temperature=0"], "temperature=0.0 must be > 0"),
        ("eval", ["policies.RL=p", "episodes=many"], "episodes='many' is invalid"),
        ("eval", ["policies.RL=p", "+colour=red"], "unknown config key(s) colour"),
        ("report", ["out=x"], "results is empty"),
        ("report", ["results=r.jsonl", "out=x", "ddof=3"], "ddof=3 must be 0"),
        ("study", ["critics", "scale=huge"], "scale='huge' is unknown"),
        ("study", ["critics", "action=go"], "action='go' is unknown"),
        ("study", ["critics", "seeds=[]"], "seeds=[] is empty"),
        ("plot_curves", ["out=f.png"], "no run to plot"),
        ("plot_curves", ["runs=[a]", "out=f.png", "x=time"], "x='time' is unknown"),
        ("plot_curves", ["runs=[a]", "out=f.png", "hlines.SFT=high"], "must be a number"),
        ("plot_curves", ["runs=[a]", "out=f.png", "smooth=0"], "smooth=0 must be >= 1"),
        ("demo", ["ppo_steps=0"], "ppo_steps=0 must be >= 1"),
        ("demo", ["maniskill_policies.RL=p"], "has labels ['RL']; give exactly SFT and RL"),
        (
            "demo",
            ["maniskill_policies.SFT=a", "maniskill_policies.RL=b", "maniskill=false"],
            "maniskill=false skips the ManiSkill stage",
        ),
        ("demo", ["maniskill_episodes=0"], "maniskill_episodes=0 must be >= 1"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(name, args, phrase):
    with pytest.raises(ConfigError) as err:
        _config(name, args)
    assert phrase in str(err.value)


def test_study_words_and_train_overrides():
    cfg = _config("study", ["critics", "scale=paper", "seeds=[0]", "train.model.checkpoint=/c"])
    assert (cfg.name, cfg.action, cfg.scale, cfg.seeds) == ("critics", "run", "paper", [0])
    assert cfg.train == ["model.checkpoint=/c"]
    plot = _config("study", ["plot", "epochs", "out=studies/e"])
    assert (plot.name, plot.action, plot.out) == ("epochs", "plot", "studies/e")
    # the old spelling: trailing key=value arguments were the training runs' overrides
    old = _config("study", ["critics", "--scale", "paper", "--dry-run", "--no-plot", "algo.lr=1"])
    assert (old.action, old.scale, old.plot, old.train) == (
        "dry_run",
        "paper",
        False,
        ["algo.lr=1"],
    )


def test_plot_curves_old_group_specs_become_groups():
    cfg = _config("plot_curves", ["runs/ppo-seed0", "GRPO=runs/g0,runs/g1", "--out", "f.png",
                                  "--metric", "eval/success", "--hline", "SFT-16k=0.78"])  # fmt: skip
    assert cfg.runs == ["runs/ppo-seed0"] and cfg.groups == {"GRPO": ["runs/g0", "runs/g1"]}
    assert (cfg.metrics, cfg.hlines, cfg.out) == (["eval/success"], {"SFT-16k": 0.78}, "f.png")


def test_demo_flags(capsys):
    assert _config("demo", ["maniskill=false", "out=o"]) == DemoConfig(out="o", maniskill=False)
    old = _config("demo", ["--skip-maniskill", "--ppo-steps", "64"])
    assert (old.maniskill, old.ppo_steps, old.out) == (False, 64, "outputs/demo")
    assert "make demo: the --flag spelling is deprecated" in capsys.readouterr().err
    ms = _config("demo", ["maniskill_policies.SFT=runs/sft/policy", "maniskill_policies.RL=r"])
    assert ms.maniskill_policies == {"SFT": "runs/sft/policy", "RL": "r"}
    assert ms.maniskill_episodes == 16


def test_demo_evaluates_given_maniskill_policies_at_the_cpu_scale(tmp_path, monkeypatch, capsys):
    """``maniskill_policies``: the ManiSkill stage evaluates those two policies (not the
    toy-trained ones) on held-out ``ind`` episodes with the ``env=maniskill_cpu`` preset, and
    the printout says what changed between them. Training and the simulator are stubbed: this
    checks the wiring; the evaluation itself has its own tests."""
    import json

    import yaml

    from vla_torchrl.evaluation.eval_loop import RESULTS_FILE

    policies = {}
    for label in ("SFT", "RL"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "policy.json").write_text("{}")
        policies[label] = str(tmp_path / label)
    calls = []

    def fake_train(cfg):
        return tmp_path / cfg.run_dir / "policy"

    def fake_evaluate(pols, *, tasks, seeds, episodes, out_dir, backend, **kw):
        calls.append(dict(policies=dict(pols), tasks=tasks, seeds=seeds, episodes=episodes,
                          backend=backend, **kw))  # fmt: skip
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [  # SFT succeeds in episodes 0-1 of 4, RL in 0-2
            dict(policy=p, task=tasks[0], seed=seeds[0], episode_id=i, grasped=True,
                 continuous_grasp=True, success=i < (2 if p == "SFT" else 3))
            for p in pols for i in range(episodes)
        ]  # fmt: skip
        (out_dir / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return {"report": out_dir / "report.md"}

    monkeypatch.setattr(demo, "train", fake_train)
    monkeypatch.setattr(demo, "evaluate", fake_evaluate)
    cfg = _config("demo", [f"out={tmp_path / 'o'}", f"maniskill_policies.SFT={policies['SFT']}",
                           f"maniskill_policies.RL={policies['RL']}", "maniskill_episodes=4"])  # fmt: skip
    assert demo.demo(cfg) == 0
    toy, maniskill = calls
    assert toy["backend"] == "toy"
    preset = yaml.safe_load((Path(demo.__file__).parents[1] / "config/conf/env/maniskill_cpu.yaml")
                            .read_text())  # fmt: skip
    assert maniskill["policies"] == policies
    assert (maniskill["tasks"], maniskill["seeds"], maniskill["episodes"]) == (["ind"], [1000], 4)
    assert maniskill["backend"] == preset["backend"] == "maniskill"
    for key in ("num_envs", "max_episode_steps", "width", "height"):
        assert maniskill[key] == preset[key], key
    # the preset's env options and transforms travel too (a user's transform must reach the eval)
    assert dict(maniskill["env_options"]) == preset["options"]
    assert [dict(t) for t in maniskill["transforms"]] == preset["transforms"]
    out = capsys.readouterr().out
    assert "SFT -> RL on ind: the same 4 episodes (seeds [1000])" in out
    assert "SFT  50.0%  ->  RL  75.0%   (+25.0 points; 0 vs 1 episodes differ" in out
    assert "RL improved on the SFT policy." in out


def _readme_commands() -> list[tuple[str, list[str]]]:
    """``(tool, args)`` of every README command line of the five tools, in code blocks and spans."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [ln for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`((?:vla-torchrl-(?:eval|study|report)|python -m vla_torchrl\.recipes\."
                        r"(?:plot_curves|report|demo)) [^`]*)`", text)  # fmt: skip
    tools = {
        "vla-torchrl-eval": "eval",
        "vla-torchrl-study": "study",
        "vla-torchrl-report": "report",
        "python -m vla_torchrl.recipes.plot_curves": "plot_curves",
        "python -m vla_torchrl.recipes.report": "report",
        "python -m vla_torchrl.recipes.demo": "demo",
    }
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        for prefix, tool in tools.items():
            if line.startswith(prefix + " "):
                args = shlex.split(line[len(prefix) :])
                if tool == "study" and args[:1] == ["list"]:
                    continue
                out.append((tool, args))
    return out


def test_every_readme_command_line_composes():
    commands = _readme_commands()
    assert {tool for tool, _ in commands} >= {"eval", "study", "report", "plot_curves"}
    for tool, args in commands:
        args = [a.replace("NAME", "critics") for a in args]
        try:
            _config(tool, args)
        except ConfigError as err:
            if "run to plot" in str(err) or "is empty" in str(err):
                continue  # a placeholder spelling, e.g. runs=[RUN_DIR,...]
            raise AssertionError(f"README: {tool} {' '.join(args)}: {err}") from err


def test_a_label_twice_in_one_policies_mapping_is_refused():
    """Hydra's mapping keeps the last of two equal keys (issue 16): refused instead, naming the
    label; a later ``policies.A=...`` still replaces an entry on purpose."""
    from vla_torchrl.errors import UserError

    with pytest.raises(UserError, match=r"label 'A' is given twice in \{A:p1,B:p,A:p2\}"):
        _config("eval", ["policies={A:p1,B:p,A:p2}"])
    with pytest.raises(UserError, match="label 'A' is given twice"):
        _config("eval", ["policies={'A':'x, y',A:z}"])  # a quoted comma is no separator
    ok = _config("eval", ["policies={A:'p, 1',B:p2}", "policies.A=q"])
    assert ok.policies == {"A": "q", "B": "p2"}


@pytest.mark.parametrize(
    "tool", ["evaluate", "report", "plot_curves", "demo", "pretrain_vision"]
)  # study: its own
def test_help_prints_the_usage_and_every_default(tool, capsys):
    """``--help`` was refused as an unknown option (issue 16): it now prints the tool's usage
    and its composed settings, with the overrides given beside it applied."""
    import importlib

    module = importlib.import_module(f"vla_torchrl.recipes.{tool}")
    assert module.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert module.__doc__.strip().splitlines()[0] in out
    assert "Settings and their defaults" in out and "hydra:" not in out
    if tool == "evaluate":
        assert "episodes: 16" in out and "temperature: 0.6" in out
        assert module.main(["episodes=3", "-h"]) == 0
        assert "episodes: 3" in capsys.readouterr().out
