"""One update through the training recipe's update path, single-process or data-parallel.

Run by ``test_train_distributed.py``::

    python _dp_train_worker.py OUT ALGO                                  # 1 process, 4 envs
    python -m torch.distributed.run --nproc-per-node 2 _dp_train_worker.py OUT ALGO

Every process collects the same 4-env rollout (same seeds, 1 thread) with the recipe's env factory
and policy; each of W ranks keeps its 4 / W envs and runs ``vla_torchrl.training.update.rl_update``
(advantages, global normalisation / GRPO groups, minibatches, gradient sync, clip, AdamW) with
``grad_accum_steps`` = its number of minibatches, so one optimizer step covers the whole batch in
both runs. Rank 0 writes the trainables before (``OUT.init``) and after (``OUT``) the update,
and the optimizer's first moments (``OUT.exp_avg``).

MODE: ``ppo`` / ``grpo`` (LoRA, replicated), ``ppo-full`` (full fine-tuning, replicated) or
``ppo-fsdp2`` (full fine-tuning, decoder layers sharded with FSDP2 as ``dist.strategy=fsdp2``
does; the checkpoint helpers gather the shards, and a reload of the gathered optimizer state
must give it back).
"""

from __future__ import annotations

import dataclasses
import sys

import torch
from safetensors.torch import save_file

from vla_torchrl.config.load import compose_config
from vla_torchrl.config.train_schema import episode_mode
from vla_torchrl.training.data_parallel import (
    full_optimizer_state,
    full_trainables,
    optimizer_state_for,
    shard_policy,
)
from vla_torchrl.training.environments import make_recipe_env
from vla_torchrl.training.loop import make_objective
from vla_torchrl.training.policy import build_policy_from_config
from vla_torchrl.training.update import rl_update
from vla_torchrl.utils import seed_everything
from vla_torchrl.utils.distributed import barrier, destroy_distributed, init_distributed

NUM_ENVS, STEPS, MINIBATCH = 4, 3, 3


def main(out: str, mode: str) -> None:
    algo = mode.split("-")[0]
    torch.set_num_threads(1)
    info = init_distributed(backend="gloo", device="cpu")
    per_rank = NUM_ENVS // info.world_size
    # Eq. (5)-(6): every reward normalised over the group (here: the global batch)
    extra = ["algo.grpo_mode=whole"] if algo == "grpo" else []
    extra += ["model.finetune=full"] if mode in ("ppo-full", "ppo-fsdp2") else []
    overrides = [
        f"algo={algo}",
        f"env.max_episode_steps={STEPS}",
        f"collector.steps_per_env={STEPS}",
        "env.width=16",
        "env.height=16",
        f"optim.minibatch_size={MINIBATCH}",
        *extra,
    ]
    cfg = compose_config(
        [*overrides, f"env.num_envs={NUM_ENVS}", f"optim.grad_accum_steps={NUM_ENVS}"],
        config_name="train_cpu",
    )
    local_cfg = compose_config(  # this rank's share: per_rank envs, per_rank minibatches
        [*overrides, f"env.num_envs={per_rank}", f"optim.grad_accum_steps={per_rank}"],
        config_name="train_cpu",
    )
    seed_everything(0)  # the same model and the same rollout on every process
    bundle = build_policy_from_config(
        cfg.model, cfg.algo, lr=cfg.optim.lr, value_lr=cfg.optim.value_lr, device="cpu"
    )
    if info.is_main:
        save_file(full_trainables(bundle.trainable_named_parameters()), f"{out}.init")
    if mode == "ppo-fsdp2":
        shard_policy(bundle, info)
    optimizer = torch.optim.AdamW(bundle.param_groups, betas=tuple(cfg.optim.betas))
    trainables = bundle.trainable_named_parameters()
    loss_fn, advantage = make_objective(cfg, bundle)
    # the env as the training loop builds it: GRPO collects fixed-length episodes (issue 15)
    env = make_recipe_env(
        cfg.env, seed=0, device="cpu", terminate_on_success=episode_mode(cfg) == "until_done"
    )
    # an easy task, so that the random tiny policy earns a reward in 3 steps (one env succeeds,
    # on rank 1: rank 0's GRPO advantages are non-zero only through the global group)
    env.config = dataclasses.replace(
        env.config,
        num_targets=1,
        target_half_size=0.5,
        step_size=1.0,
        hold_steps=1,
        use_gripper=False,
    )
    with torch.no_grad():
        rollout = env.rollout(STEPS, bundle.actor, break_when_any_done=False)  # [4, T]
    env.close()
    assert rollout.get(("next", "reward")).abs().sum() > 0
    local = rollout[info.rank * per_rank : (info.rank + 1) * per_rank].clone()
    stats = rl_update(
        local_cfg, local, loss_fn, advantage, optimizer, list(trainables.values()), info
    )
    assert stats["steps"] == 1 and stats["skipped"] == 0, stats
    tensors, state = full_trainables(trainables), full_optimizer_state(optimizer)
    # checkpoint round trip: the gathered state cut back into shards and gathered again
    optimizer.load_state_dict(optimizer_state_for(optimizer, state))
    again = full_optimizer_state(optimizer)
    for idx, entry in state["state"].items():
        assert torch.equal(entry["exp_avg"], again["state"][idx]["exp_avg"])
    if info.is_main:
        save_file(tensors, out)
        names = list(trainables)
        moments = {names[int(i)]: e["exp_avg"] for i, e in state["state"].items()}
        save_file(moments, f"{out}.exp_avg")
    barrier(info)
    destroy_distributed(info)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
