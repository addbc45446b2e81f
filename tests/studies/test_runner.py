"""vla-torchrl-study: planning, aggregation over seeds, and tiny end-to-end studies on the toy env."""

from __future__ import annotations

import json
import math

import pytest

from vla_torchrl.errors import UserError
from vla_torchrl.recipes.study import main
from vla_torchrl.studies import runner
from vla_torchrl.studies.catalogue import STUDIES
from vla_torchrl.studies.curves_report import (
    curves_figure,
    final_value,
    mean_std,
    summarize_runs,
    summary_markdown,
)
from vla_torchrl.studies.runner import plan_study, run_study

# one iteration of 4 envs x 4 steps per run: the tiny scale with half its budget
ONE_ITERATION = ["collector.total_env_steps=16"]


def _write_log(run_dir, rows):
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for step, elapsed, success, ret in rows:
            fh.write(
                json.dumps(
                    {
                        "step": step,
                        "elapsed_s": elapsed,
                        "train/success": success,
                        "train/episode_return": ret,
                        "perf/update_s": 4.0 if (step // 10) % 2 else 2.0,
                    }
                )
                + "\n"
            )


def _legend_labels(fig):
    return [{t.get_text() for t in ax.get_legend().get_texts()} for ax in fig.axes]


def test_aggregation_over_seeds_matches_hand_computed_values(tmp_path):
    a, b = tmp_path / "ppo-seed0", tmp_path / "ppo-seed1"
    _write_log(
        a, [(10, 1.0, 0.0, 0.0), (20, 2.0, 0.2, 0.3), (30, 3.0, 0.4, 0.5), (40, 4.0, 0.6, 0.7)]
    )
    _write_log(b, [(10, 1.5, 0.1, 0.1), (20, 3.0, 0.2, 0.2), (30, 4.5, 0.8, 0.9)])
    summary = summarize_runs({"PPO": [a, b]}, metrics=["train/success"], tail=3)["PPO"]
    # finals: seed0 (0.2 + 0.4 + 0.6) / 3 = 0.4; seed1 (0.1 + 0.2 + 0.8) / 3 = 0.36667
    assert summary["seeds"] == 2
    assert math.isclose(summary["train/success"].mean, (0.4 + 1.1 / 3) / 2, rel_tol=1e-9)
    assert math.isclose(summary["train/success"].std, abs(0.4 - 1.1 / 3) / 2, rel_tol=1e-9)
    # env steps 40 and 30; wall-clock 4.0 and 4.5 s (last records)
    assert summary["env_steps"].mean == 35.0 and summary["env_steps"].std == 5.0
    assert summary["wall_clock_s"].mean == 4.25 and summary["wall_clock_s"].std == 0.25
    # update seconds: seed0 (4+2+4+2)/4 = 3, seed1 (4+2+4)/3 = 10/3
    assert math.isclose(summary["update_s"].mean, (3 + 10 / 3) / 2)
    # no study_run.json: memory unknown, shown as "-"
    assert summary["peak_memory_mb"].n == 0
    assert "| PPO | 2 | 0.383 +- 0.017 | 35 |" in summary_markdown(
        {"PPO": summary}, metrics=["train/success"]
    )


def test_final_value_and_mean_std_on_small_cases():
    records = [{"step": 1, "m": 1.0}, {"step": 2}, {"step": 3, "m": 3.0}]
    assert final_value(records, "m", tail=1) == 3.0
    assert final_value(records, "m", tail=5) == 2.0  # fewer values than tail: all of them
    assert math.isnan(final_value(records, "absent"))
    stat = mean_std([1.0, 2.0, 3.0, float("nan")])
    assert (stat.mean, stat.n) == (2.0, 3)
    assert math.isclose(stat.std, math.sqrt(2 / 3))  # population std, NaN dropped


def test_curves_figure_has_one_series_per_variant_in_every_panel(tmp_path):
    runs = {}
    for label in ("A", "B"):
        for seed in (0, 1):
            d = tmp_path / f"{label}-seed{seed}"
            _write_log(d, [(10, 1.0, 0.1 * seed, 0.0), (20, 2.0, 0.5, 0.5)])
            runs.setdefault(label, []).append(d)
    fig = curves_figure(
        runs, metrics=["train/success", "train/episode_return"], x_axes=["env_steps", "wall_clock"]
    )
    assert len(fig.axes) == 4
    assert _legend_labels(fig) == [{"A", "B"}] * 4
    # the plotted mean of A at step 10 is the mean over seeds (0.0 and 0.1)
    line = next(ln for ln in fig.axes[0].lines if ln.get_label() == "A")
    assert math.isclose(line.get_ydata()[0], 0.05)


def test_plan_orders_overrides_and_shares_the_warmup(tmp_path):
    runs = plan_study(
        STUDIES["algorithms"], scale="tiny", seeds=[3, 4], out=tmp_path, overrides=["algo=ppo"]
    )
    warmup, *variants = runs
    assert (warmup.role, warmup.seed) == ("prerequisite", 3)
    assert [r.label for r in variants[::2]] == ["PPO", "PPO-ORZ", "GRPO", "GRPO(s)", "DPO (TPO)"]
    assert [r.seed for r in variants[:2]] == [3, 4]
    grpo = next(r for r in variants if r.label == "GRPO")
    # the variant's algo comes after the user's, so the factor under study wins
    algos = [o for o in grpo.overrides if o.startswith("algo=")]
    assert algos == ["algo=ppo", "algo=grpo"]
    assert f"model.init_from={tmp_path}/runs/warmup/policy" in grpo.overrides
    assert grpo.run_dir == str(tmp_path / "runs" / "grpo-seed3")


def test_paper_scale_needs_demos_and_dry_run_prints_train_commands(tmp_path, capsys):
    with pytest.raises(UserError, match="demos=DIR"):
        plan_study(STUDIES["sft_demos"], scale="paper", seeds=[0], out=tmp_path)
    assert main(["critics", "scale=paper", "action=dry_run", "train.model.checkpoint=/ckpt"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all("model.checkpoint=/ckpt" in line for line in lines)
    assert lines[0].startswith("vla-torchrl-train --config-name train ")
    assert "algo.demos=$DEMOS/warmup-140" in lines[0]
    critics = [next(o for o in line.split() if o.startswith("algo.critic=")) for line in lines[1:]]
    assert sorted(set(critics)) == [
        "algo.critic=separate",
        "algo.critic=shared_concat",
        "algo.critic=shared_h0",
        "algo.critic=shared_hn",
    ]
    # the deprecated --flag spelling: the same commands, after one deprecation line
    assert main(["critics", "--scale", "paper", "--dry-run", "model.checkpoint=/ckpt"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == lines
    assert "deprecated" in captured.err
    assert "action=dry_run" in captured.err and "train.model.checkpoint=/ckpt" in captured.err


def test_study_command_line_is_validated(tmp_path, capsys):
    assert main(["critics", "scale=huge"]) == 2
    assert "scale='huge' is unknown" in capsys.readouterr().err
    assert main(["critics", "epochs"]) == 2
    assert "unexpected argument(s) ['epochs']" in capsys.readouterr().err
    assert main(["nope", "action=dry_run"]) == 2
    assert "known studies: algorithms" in capsys.readouterr().err
    assert main(["list"]) == 0 and "critics" in capsys.readouterr().out


def test_unknown_study_and_missing_runs_are_user_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="known studies: algorithms, coverage"):
        run_study("nope", scale="tiny", seeds=[0], out=tmp_path)
    with pytest.raises(UserError, match="launcher='threads' is unknown"):
        run_study("epochs", scale="tiny", seeds=[0], out=tmp_path, launcher="threads")
    assert main(["plot", "epochs", f"out={tmp_path}"]) == 2
    assert "run the study first" in capsys.readouterr().err


def _summary(out):
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_algorithm_comparison_runs_and_plots_every_algorithm(tmp_path):
    files = run_study("algorithms", scale="tiny", seeds=[0], out=tmp_path, overrides=ONE_ITERATION)
    assert files["figure"].is_file() and files["figure"].stat().st_size > 0
    labels = ["PPO", "PPO-ORZ", "GRPO", "GRPO(s)", "DPO (TPO)"]
    summary = _summary(tmp_path)
    assert list(summary["variants"]) == labels
    assert all(v["env_steps"]["mean"] == 16 for v in summary["variants"].values())
    runs = {label: [tmp_path / d for d in dirs] for label, dirs in summary["runs"].items()}
    assert runs["PPO"] == [tmp_path / "runs" / "ppo-seed0"]
    fig = curves_figure(runs, metrics=["train/episode_return"])
    assert _legend_labels(fig) == [set(labels)]


@pytest.mark.slow
def test_critic_ablation_reports_memory_and_speed_per_design(tmp_path):
    run_study("critics", scale="tiny", seeds=[0], out=tmp_path, overrides=ONE_ITERATION)
    variants = _summary(tmp_path)["variants"]
    assert list(variants) == [
        "h^0 (shared)",
        "h^n (shared)",
        "[h^0..h^n] (shared)",
        "separate backbone",
    ]
    for row in variants.values():
        assert row["update_s"]["mean"] > 0
        assert row["peak_memory_mb"]["mean"] > 0  # peak resident set (CPU proxy)
    # each run really trained the critic it names
    for run in json.loads((tmp_path / "study.json").read_text())["runs"][1:]:
        config = json.loads(
            (tmp_path / "runs" / run["run_dir"].rsplit("/", 1)[1] / "config.json").read_text()
        )
        assert f"algo.critic={config['algo']['critic']}" in run["overrides"]
        assert config["collector"]["total_env_steps"] == 16


@pytest.mark.slow
def test_epochs_study_plots_steps_and_wall_clock_and_resumes(tmp_path, monkeypatch):
    files = run_study("epochs", scale="tiny", seeds=[0], out=tmp_path, overrides=ONE_ITERATION)
    summary = _summary(tmp_path)
    assert list(summary["variants"]) == ["epoch 1", "epoch 2", "epoch 4"]
    runs = {label: [tmp_path / d for d in dirs] for label, dirs in summary["runs"].items()}
    fig = curves_figure(runs, metrics=["train/episode_return"], x_axes=["env_steps", "wall_clock"])
    assert [ax.get_xlabel() for ax in fig.axes] == ["environment steps", "wall-clock time (min)"]
    assert _legend_labels(fig) == [{"epoch 1", "epoch 2", "epoch 4"}] * 2
    # a re-run finds every run finished and trains nothing
    monkeypatch.setattr(runner, "execute_run", lambda run: pytest.fail(f"re-ran {run.label}"))
    again = run_study("epochs", scale="tiny", seeds=[0], out=tmp_path, overrides=ONE_ITERATION)
    assert again["figure"] == files["figure"]
