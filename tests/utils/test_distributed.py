"""Data-parallel helpers: single-process behaviour and the 2-rank PPO equivalence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensordict import TensorDict

from tests.helpers import run_python, torchrun
from vla_torchrl.objectives import GroupRelativeAdvantage
from vla_torchrl.objectives.global_batch import (
    global_advantage_stats,
    global_group_relative_advantage,
)
from vla_torchrl.utils.distributed import (
    DistInfo,
    init_distributed,
    rank_seed,
    reduce_metrics,
    sync_gradients,
)

WORKER = Path(__file__).with_name("_dp_ppo_worker.py")


def test_single_process_is_a_noop_context(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.is_main, info.enabled) == (0, 1, True, False)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    sync_gradients([p], info)
    assert p.grad.tolist() == [2.0, 2.0, 2.0]
    assert reduce_metrics({"a": 1.5}, info) == {"a": 1.5}


def test_partial_torchrun_env_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        init_distributed(device="cpu")


def test_rank_seeds_differ_per_rank():
    seeds = {
        rank_seed(5, DistInfo(rank=r, world_size=4, local_rank=r, device=torch.device("cpu")))
        for r in range(4)
    }
    assert len(seeds) == 4 and 5 in seeds


def test_global_advantage_stats_single_process_matches_hand_values():
    fn = global_advantage_stats(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    mean, std = fn(torch.zeros(2), None)
    assert mean.item() == pytest.approx(3.0)
    assert std.item() == pytest.approx((14.0 / 3.0) ** 0.5)  # (4 + 1 + 0 + 9) / 3


def test_grpo_single_process_equals_the_module():
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    td = TensorDict(
        {
            "next": {
                "reward": torch.tensor([[[0.0], [1.0]], [[0.0], [0.0]]]),
                "done": torch.zeros(2, 2, 1, dtype=torch.bool),
            }
        },
        batch_size=[2, 2],
    )
    out = global_group_relative_advantage(td, GroupRelativeAdvantage(mode="whole"), info)
    # R_w = {0, 1, 0, 0}: mean 0.25, std 0.5; reverse cumsum per row
    expected = torch.tensor([[-0.5 + 1.5, 1.5], [-1.0, -0.5]])
    torch.testing.assert_close(out["advantage"].squeeze(-1), expected)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_two_rank_ppo_update_equals_one_process_on_the_concatenated_batch(tmp_path):
    """gloo, 2 ranks x 2 envs vs 1 process x 4 envs: same rollout, one PPO update (global
    advantage normalisation, 2 accumulated minibatches, synced gradients, clip, AdamW)."""
    run_python([str(WORKER), str(tmp_path / "single.st")])
    torchrun(str(WORKER), str(tmp_path / "dp.st"))
    torchrun(str(WORKER), str(tmp_path / "nosync.st"), env_extra={"VLA_TEST_SKIP_GRAD_SYNC": "1"})
    single, dp = load_file(tmp_path / "single.st"), load_file(tmp_path / "dp.st")
    init, nosync = load_file(tmp_path / "single.st.init"), load_file(tmp_path / "nosync.st")
    assert _max_diff(init, load_file(tmp_path / "dp.st.init")) == 0.0  # same start
    assert _max_diff(single, init) > 1e-4  # the update moved the parameters
    assert _max_diff(dp, single) < 1e-5
    assert _max_diff(nosync, single) > 1e-4  # without gradient sync rank 0 differs


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_two_rank_collectives_use_the_global_batch(tmp_path):
    import json

    worker = Path(__file__).with_name("_dp_collectives_worker.py")
    torchrun(str(worker), str(tmp_path / "r"))
    r0 = json.loads((tmp_path / "r.0").read_text())
    r1 = json.loads((tmp_path / "r.1").read_text())
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.5, 0.0], [0.0, 2.0]])
    flat = rewards.reshape(-1)
    # global mean/std over all 8 rewards (plain torch on the whole batch)
    for r in (r0, r1):
        assert r["mean"] == pytest.approx(flat.mean().item(), abs=1e-6)
        assert r["std"] == pytest.approx(flat.std().item(), abs=1e-6)
        assert r["m"] == pytest.approx(0.5)
    # Eq. (5)-(6) by hand on the global group: normalise, then reverse cumulative sum per row
    normed = (rewards - flat.mean()) / flat.std()
    expected = torch.stack([normed[:, 1] + normed[:, 0], normed[:, 1]], dim=1)
    got = torch.tensor(r0["adv"] + r1["adv"])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
