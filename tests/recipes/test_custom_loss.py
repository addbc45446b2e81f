"""Custom losses through ``vla-torchrl-train`` (issue 16): ``algo.loss._target_`` and PPO's KL.

Everything goes through ``vla_torchrl.recipes.train.main`` (what the console script calls) with
the tiny OpenVLA on the toy env, two iterations of 4 envs x 4 steps.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import SMALL_TRAIN as SMALL
from vla_torchrl.envs.demos import save_demos
from vla_torchrl.envs.toy import toy_oracle_demos
from vla_torchrl.keys import ACTION_KEY, ACTION_TOKENS_KEY
from vla_torchrl.objectives import VLASFTLoss
from vla_torchrl.recipes import train as train_module
from vla_torchrl.training.policy import load_policy

QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none", "hydra.output_subdir=null"]
EXAMPLE = "examples.ppo_with_sft.PPOWithSFTLoss"


def _train(run_dir, *overrides) -> list[dict]:
    argv = ["--config-name", "train_cpu", *SMALL, f"run_dir={run_dir}", *QUIET]
    argv += ["collector.total_env_steps=32", "model.finetune=full", "optim.lr=3e-3", *overrides]
    assert train_module.main(argv) == 0
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("VLA_TORCHRL_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.fixture(scope="module")
def demos_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "toy-demos"
    save_demos(toy_oracle_demos(4, seed=3, image_size=16, max_steps=4), path)
    return path


def _demo_nll(policy_dir, demos_dir) -> float:
    from vla_torchrl.envs.demos import load_demos

    bundle = load_policy(policy_dir)
    demos = load_demos(demos_dir).to_tensordict()
    tokenizer = bundle.processor.action_tokenizer
    demos.set(ACTION_TOKENS_KEY, tokenizer.actions_to_tokens(demos.get(ACTION_KEY)))
    with torch.no_grad():
        return float(VLASFTLoss(bundle.evaluator)(demos)["loss_sft"])


@pytest.mark.slow
def test_ppo_kl_coef_is_applied_by_the_recipe(tmp_path):
    """``algo=ppo algo.reference=initial algo.kl_coef=0.5`` adds the KL term (was ignored)."""
    records = _train(tmp_path, "algo.reference=initial", "algo.kl_coef=0.5")
    assert len(records) == 2
    for r in records:
        assert r["losses/loss_kl"] == pytest.approx(0.5 * r["losses/kl_ref"], rel=1e-5)
    # the first minibatch is the reference itself (KL 0); later ones moved away from it
    assert records[-1]["losses/kl_ref"] > 0


@pytest.mark.slow
def test_example_ppo_with_sft_and_kl_trains_end_to_end_and_learns_the_demos(tmp_path, demos_dir):
    """examples/ppo_with_sft.py via algo.loss._target_: PPO + KL to the reference + SFT."""
    custom = _train(
        tmp_path / "custom",
        f"algo.loss._target_={EXAMPLE}",
        f"+algo.loss.demos={demos_dir}",
        "+algo.loss.sft_coeff=1.0",
        "algo.reference=initial",
        "algo.kl_coef=0.1",
    )
    last = custom[-1]
    for key in ("loss_objective", "loss_critic", "loss_kl", "loss_sft", "sft_nll"):
        assert f"losses/{key}" in last, sorted(last)
    assert last["losses/loss_sft"] == pytest.approx(last["losses/sft_nll"], rel=1e-5)
    config = json.loads((tmp_path / "custom" / "config.json").read_text())
    assert config["algo"]["loss"]["_target_"] == EXAMPLE
    # the same run without the SFT term (same seed, same rollouts' start): the SFT run fits the
    # demonstrations better, measured independently on the saved policies
    _train(tmp_path / "ppo", "algo.reference=initial", "algo.kl_coef=0.1")
    with_sft = _demo_nll(tmp_path / "custom" / "policy", demos_dir)
    without = _demo_nll(tmp_path / "ppo" / "policy", demos_dir)
    assert with_sft < without - 0.01, (with_sft, without)


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        (["algo.loss._target_=no_such_pkg.Loss"], "algo.loss._target_='no_such_pkg.Loss' cannot"),
        (["+algo.loss.sft_coeff=1"], "no algo.loss._target_"),
        ([f"algo.loss._target_={EXAMPLE}", "+algo.loss.nope=1"], "nope"),
        (["algo=tpo", "algo.kl_coef=0.5"], "algo.kl_coef=0.5 is not used by algo.name=tpo"),
        (["algo=tpo", "algo.loss._target_=my_pkg.Loss"], "not algo.name=tpo"),
        (["algo=sft", f"algo.loss._target_={EXAMPLE}"], "algo=sft is SFT already"),
    ],
)
def test_bad_custom_loss_settings_end_in_one_line(tmp_path, capsys, overrides, phrase):
    argv = ["--config-name", "train_cpu", *SMALL, f"run_dir={tmp_path}", *QUIET, *overrides]
    assert train_module.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert phrase in lines[0], lines[0]
