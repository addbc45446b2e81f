"""One PPO update on the toy env with the tiny OpenVLA, single-process or data-parallel.

Run by ``test_distributed.py``: ``python _dp_ppo_worker.py OUT`` (one process, whole batch) or
``python -m torch.distributed.run --nproc-per-node 2 _dp_ppo_worker.py OUT`` (each rank takes
its half of the envs). Every process collects the same rollout (same seeds, 1 thread), so the
two runs see identical data; rank 0 writes the updated trainables to ``OUT``.
"""

from __future__ import annotations

import os
import sys

import torch

from vla_torchrl.envs.toy import make_toy_env
from vla_torchrl.keys import ADVANTAGE_KEY
from vla_torchrl.modules import build_policy
from vla_torchrl.objectives import GAEAdvantage, VLAPPOLoss
from vla_torchrl.objectives.global_batch import global_advantage_stats
from vla_torchrl.utils import seed_everything
from vla_torchrl.utils.distributed import (
    barrier,
    destroy_distributed,
    init_distributed,
    sync_gradients,
)

NUM_ENVS, STEPS, SEED = 4, 3, 0


def main(out: str) -> None:
    torch.set_num_threads(1)
    info = init_distributed()
    seed_everything(SEED)  # same model init and same rollout on every rank
    bundle = build_policy("tiny", critic="shared", device="cpu")
    env = make_toy_env(NUM_ENVS, seed=SEED, image_size=32, max_steps=STEPS)
    with torch.no_grad():
        rollout = env.rollout(STEPS, bundle.actor, break_when_any_done=False)
    per_rank = NUM_ENVS // info.world_size
    local = rollout[info.rank * per_rank : (info.rank + 1) * per_rank].clone()
    local = GAEAdvantage(gamma=0.99, lmbda=0.95, value_network=bundle.actor)(local)
    loss_fn = VLAPPOLoss(bundle.evaluator, entropy_coeff=0.01)
    loss_fn.advantage_stats_fn = global_advantage_stats(local[ADVANTAGE_KEY])
    params = [p for g in bundle.param_groups for p in g["params"]]
    if info.is_main:
        bundle.save_trainable(f"{out}.init")
    # Adam's first step is lr * g / (|g| + eps): on a weight whose gradient is ~eps, the last-bit
    # differences between a 2-rank all-reduce and a 1-process sum come out ~lr * 1e-2 (1.5e-5
    # measured with the fallback tokenizer, where ../shared/assets is absent). eps 1e-6 keeps
    # that amplification below the test's 1e-5 while every other weight still moves by ~lr.
    optim = torch.optim.AdamW(bundle.param_groups, eps=1e-6)
    # two accumulated minibatches per rank (equal sizes), loss = mean over minibatches
    flat = local.reshape(-1)
    minibatches = flat.split(flat.shape[0] // 2)
    for mb in minibatches:
        losses = loss_fn(mb)
        total = sum(v for k, v in losses.items() if k.startswith("loss_"))
        (total / len(minibatches)).backward()
    if os.environ.get("VLA_TEST_SKIP_GRAD_SYNC") != "1":  # the test's negative control
        sync_gradients(params, info)
    torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    optim.step()
    if info.is_main:
        bundle.save_trainable(out)
    barrier(info)
    destroy_distributed(info)


if __name__ == "__main__":
    main(sys.argv[1])
