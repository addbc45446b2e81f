"""Evaluation during training: when it runs, what it logs, and that it leaves training untouched."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tests.helpers import SMALL_TRAIN
from vla_torchrl.config.load import compose_config
from vla_torchrl.training.loop import train
from vla_torchrl.training.periodic_eval import eval_due

SMALL = [
    *SMALL_TRAIN,
    "collector.total_env_steps=64",
    "collector.eval_episodes=6",
    "checkpoint_every=0",
]


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_eval_due_by_hand():
    # every 32 steps with 16-step iterations: after steps 32 and 64; 48 is the end of a 48-run
    assert [eval_due(s, 16, every=32, total=80) for s in (16, 32, 48, 64, 80)] == [
        False,
        True,
        False,
        True,
        True,
    ]
    assert not eval_due(80, 16, every=0, total=80)  # 0: never, not even at the end


def test_evaluations_are_logged_on_schedule_and_do_not_change_training(tmp_path):
    with_eval, without = tmp_path / "eval", tmp_path / "plain"
    train(
        compose_config(
            [*SMALL, "collector.eval_every=32", f"run_dir={with_eval}"], config_name="train_cpu"
        )
    )
    train(
        compose_config(
            [*SMALL, "collector.eval_every=0", f"run_dir={without}"], config_name="train_cpu"
        )
    )
    records = _records(with_eval)
    evaluated = [r["step"] for r in records if "eval/success" in r]
    assert evaluated == [32, 64]
    for r in records:
        if "eval/success" in r:
            assert r["eval/episodes"] == 6
            assert 0.0 <= r["eval/success"] <= r["eval/continuous_grasp"] <= r["eval/grasped"] <= 1
            # the return is the final potential (0.1 grasped + 0.1 held + 1.0 success)
            expected = (
                0.1 * r["eval/grasped"] + 0.1 * r["eval/continuous_grasp"] + r["eval/success"]
            )
            assert abs(r["eval/episode_return"] - expected) < 1e-5
    assert not any("eval/success" in r for r in _records(without))
    # evaluating draws its own seeded random numbers: the trained weights are bit-identical
    a = load_file(with_eval / "policy" / "trainable.safetensors")
    b = load_file(without / "policy" / "trainable.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_evaluating_on_the_training_env_plays_the_same_episodes_and_leaves_training_alone(
    tmp_path, monkeypatch
):
    """``collector.eval_env=training``: no evaluation env is built, the evaluations equal those
    of an env of its own (same seed, workers and episodes), the weights those of a run that
    never evaluates."""
    import vla_torchrl.training.periodic_eval as periodic_eval

    runs = {name: tmp_path / name for name in ("own", "training", "plain")}
    for name, run_dir in runs.items():
        extra = ["collector.eval_every=0"] if name == "plain" else ["collector.eval_every=32"]
        if name == "training":  # building an evaluation env now fails the run
            monkeypatch.setattr(periodic_eval, "make_recipe_env", None)
        train(
            compose_config(
                [
                    *SMALL,
                    *extra,
                    f"collector.eval_env={'own' if name == 'plain' else name}",
                    f"run_dir={run_dir}",
                ],
                config_name="train_cpu",
            )
        )

    def evals(run_dir):
        return [
            {k: v for k, v in r.items() if k.startswith("eval/")}
            for r in _records(run_dir)
            if "eval/success" in r
        ]

    assert len(evals(runs["own"])) == 2 and evals(runs["training"]) == evals(runs["own"])
    a = load_file(runs["training"] / "policy" / "trainable.safetensors")
    b = load_file(runs["plain"] / "policy" / "trainable.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize(
    "overrides, names",
    [
        (["algo=grpo", "algo.critic=none", "env.num_envs=4"], "fixed-length"),
        (["env.num_envs=2", "collector.eval_num_envs=1"], "collector.eval_num_envs=1"),
        (["env.num_envs=2", "collector.eval_episodes=1"], "collector.eval_episodes=1"),
        (["algo=sft"], "algo=sft has none"),
    ],
)
def test_evaluating_on_the_training_env_refuses_an_env_that_differs(overrides, names):
    from vla_torchrl.config.train_schema import validate
    from vla_torchrl.errors import ConfigError

    cfg = compose_config(
        [*SMALL_TRAIN, "collector.eval_env=training", *overrides], config_name="train_cpu"
    )
    with pytest.raises(ConfigError, match="collector.eval_env=training") as err:
        validate(cfg, tasks=["ind", "reach-corner"])
    assert names in str(err.value) and "collector.eval_env=own" in str(err.value)


def test_the_evaluation_env_has_collector_eval_num_envs_workers(monkeypatch):
    """``collector.eval_num_envs`` sizes the evaluation env (its workers live beside the
    training env's); unset, it is ``env.num_envs``; either way at most ``eval_episodes``, and
    each evaluation still runs ``eval_episodes`` episodes."""
    import pytest

    import vla_torchrl.training.periodic_eval as periodic_eval
    from vla_torchrl.errors import UserError
    from vla_torchrl.training.policy import build_policy_from_config

    built = []
    make = periodic_eval.make_recipe_env

    def recorded(env_cfg, **kwargs):
        built.append(kwargs["num_envs"])
        return make(env_cfg, **kwargs)

    monkeypatch.setattr(periodic_eval, "make_recipe_env", recorded)
    results = {}
    for extra in ([], ["collector.eval_num_envs=1"], ["collector.eval_num_envs=9"]):
        cfg = compose_config(
            [*SMALL_TRAIN, "env.num_envs=2", "collector.eval_episodes=3", "algo=sft", *extra],
            config_name="train_cpu",
        )
        evaluation = periodic_eval.PeriodicEvaluation(
            cfg, build_policy_from_config(cfg.model, cfg.algo)
        )
        try:
            results[tuple(extra)] = evaluation()
        finally:
            evaluation.close()
    assert built == [2, 1, 3]
    assert all(r["eval/episodes"] == 3 for r in results.values())
    with pytest.raises(UserError, match="collector.eval_num_envs=0 must be >= 1"):
        compose_config([*SMALL_TRAIN, "collector.eval_num_envs=0"], config_name="train_cpu")
