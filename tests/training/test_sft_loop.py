"""The SFT loop: demo statistics stored in the policy, held-out split, schedule, best/last policies."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tensordict import TensorDict

from tests.helpers import SMALL_TRAIN
from vla_torchrl.config.load import compose_config
from vla_torchrl.keys import ACTION_KEY, EPISODE_ID_KEY
from vla_torchrl.training.loop import train
from vla_torchrl.training.policy import load_policy
from vla_torchrl.training.sft_loop import _split, lr_factor


def test_cosine_schedule_matches_the_formula():
    total, warmup, floor = 20, 4, 0.1
    for step in range(total + 1):
        got = lr_factor(step, total, schedule="cosine", warmup=warmup, floor=floor)
        if step < warmup:
            want = (step + 1) / warmup
        else:  # written out independently of the implementation's expression
            t = (step - warmup) / (total - warmup)
            want = floor + (1 - floor) * (math.cos(math.pi * t) + 1) / 2
        assert got == pytest.approx(want)
    assert lr_factor(50, total, schedule="constant", warmup=warmup, floor=floor) == 1.0


def test_held_out_split_keeps_whole_episodes():
    ids = torch.arange(10).repeat_interleave(3)  # 10 episodes of 3 steps
    demos = TensorDict({EPISODE_ID_KEY: ids, ACTION_KEY: torch.zeros(30, 7)}, [30])
    train_part, held = _split(demos, 0.2, seed=0)
    train_ids, held_ids = (
        set(train_part[EPISODE_ID_KEY].tolist()),
        set(held[EPISODE_ID_KEY].tolist()),
    )
    assert len(held_ids) == 2 and not train_ids & held_ids
    assert train_part.shape[0] + held.shape[0] == 30 and held.shape[0] == 6


@pytest.mark.slow
def test_sft_run_stores_demo_statistics_and_writes_best_and_last_policies(tmp_path):
    run = tmp_path / "sft"
    cfg = compose_config(
        [
            *SMALL_TRAIN,
            "algo=sft",
            "algo.epochs=2",
            "algo.demo_episodes=8",
            "algo.val_fraction=0.25",
            "algo.eval_every_epochs=1",
            "collector.eval_episodes=2",
            "optim.lr_schedule=cosine",
            "model.finetune=full",
            f"run_dir={run}",
        ],
        config_name="train_cpu",
    )
    policy = train(cfg)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/iteration"] for r in records] == [1, 2]
    assert all("eval/sft_loss" in r and "eval/success" in r for r in records)
    for folder in (policy, run / "policy-last", run / "policy-best"):
        spec = json.loads((folder / "policy.json").read_text())
        assert spec["unnorm_key"] == "demos" and "demos" in spec["norm_stats"]
    # the reloaded policy un-normalises with the stored q01 / q99 (not the identity)
    spec = json.loads((policy / "policy.json").read_text())
    q01 = spec["norm_stats"]["demos"]["action"]["q01"]
    tok = load_policy(policy).processor.action_tokenizer
    assert tok.q01 is not None and torch.allclose(tok.q01, torch.tensor(q01))


def test_held_out_loss_with_shuffled_images_measures_image_reliance():
    from tensordict import TensorDict

    from vla_torchrl.training.sft_loop import held_out_loss

    n = 7
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 2, 2, 3).clone()
    held = TensorDict(
        {"observation": {"image": images}, "target": torch.arange(n, dtype=torch.float32)},
        batch_size=[n],
    )

    def reads_the_image(td):  # per-step squared error of "predict the target from the image"
        guess = td["observation", "image"].float().mean(dim=(1, 2, 3))
        return {"loss_sft": ((guess - td["target"]) ** 2).mean()}

    def ignores_the_image(td):
        return {"loss_sft": (td["target"] ** 2).mean()}

    assert held_out_loss(reads_the_image, held, 3) == 0.0
    shuffled = held_out_loss(reads_the_image, held, 3, shuffle_images=True)
    # plain loop over the same permutation: every step got another step's image (a derangement)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=g).tolist()
    expected = 0.0
    for k, i in enumerate(order):
        j = order[(k + 1) % n]
        assert j != i
        expected += float((j - i) ** 2)
    assert shuffled == pytest.approx(expected / n)
    assert held_out_loss(ignores_the_image, held, 3, shuffle_images=True) == pytest.approx(
        held_out_loss(ignores_the_image, held, 3)
    )
    assert torch.equal(held["observation", "image"], images)  # the caller's data is untouched


def test_several_demo_sets_are_concatenated_with_their_episodes_kept_apart():
    from vla_torchrl.errors import UserError
    from vla_torchrl.training.sft_loop import _concatenated

    def demo_set(n_episodes: int, extra: bool = False) -> TensorDict:
        ids = torch.arange(n_episodes).repeat_interleave(2)
        td = TensorDict({EPISODE_ID_KEY: ids, ACTION_KEY: torch.zeros(len(ids), 7)}, [len(ids)])
        if extra:
            td.set("privileged", TensorDict({"x": torch.zeros(len(ids))}, [len(ids)]))
        return td

    both = _concatenated([demo_set(3), demo_set(2)], ["a", "b"])
    # episode 0 of the second set is not episode 0 of the first: the split keeps them apart
    assert both.shape[0] == 10 and len(torch.unique(both[EPISODE_ID_KEY])) == 5
    with pytest.raises(UserError, match="'b' has other entries than 'a'.*privileged"):
        _concatenated([demo_set(3), demo_set(2, extra=True)], ["a", "b"])
