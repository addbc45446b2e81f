"""``vla-torchrl-train``: SFT, PPO, PPO-ORZ, GRPO, GRPO(s) and TPO on a VLA, driven by TorchRL.

Usage (Hydra overrides)::

    vla-torchrl-train --config-name train_cpu algo=ppo              # toy env, tiny model, CPU
    vla-torchrl-train algo=ppo model.checkpoint=/data/openvla-7b    # the paper's setup, one GPU
    vla-torchrl-train --config-name train_cpu algo=sft              # warm-up on demonstrations
    vla-torchrl-train --config-name train_cpu algo=ppo model.init_from=runs/<sft run>/policy

The run directory holds ``config.json``, ``metrics.jsonl`` (``train/``, ``losses/``, ``perf/``,
``eval/``), ``checkpoints/`` (atomic, resumed automatically with ``resume=true``) and ``policy/``
(the final policy, reloadable with :func:`vla_torchrl.training.policy.load_policy`).

One iteration reads top to bottom: reset all envs -> collect ``steps_per_env`` steps with the
sampling actor (TorchRL ``Collector``) -> advantages (GAE | group-relative | none) -> minibatch
updates with gradient accumulation -> log -> checkpoint. Every rollout starts from fresh
episodes whose env seed is a function of (seed, iteration), so a resumed run replays exactly
what an uninterrupted run would have seen.

Data-parallel (README "Scale out")::

    torchrun --nproc-per-node 8 -m vla_torchrl.recipes.train algo=ppo model.checkpoint=...

Each rank runs ``env.num_envs`` envs with its own seeds and a policy replica; advantage
normalisation and GRPO groups use the global batch, gradients are averaged over ranks once per
optimizer step (``dist.strategy=ddp``); only rank 0 logs, checkpoints and saves the policy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vla_torchrl.assets import apply_assets_policy
from vla_torchrl.config.load import to_train_config
from vla_torchrl.recipes._cli import run_cli
from vla_torchrl.training.loop import train
from vla_torchrl.training.run import check_can_start

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Console entry point (Hydra): ``vla-torchrl-train [--config-name train_cpu] key=value ...``."""

    args = list(sys.argv[1:] if argv is None else argv)
    rank = int(os.environ.get("RANK", "0"))
    # Hydra writes .hydra/ before the job starts; we write it ourselves once the run is known
    # to start, so that a refused command leaves the run's files as they were
    write_hydra = rank == 0 and not any(a.startswith("hydra.output_subdir") for a in args)

    def _main(dict_cfg) -> None:
        cfg = to_train_config(dict_cfg)
        apply_assets_policy(cfg.assets, backend=cfg.env.backend)
        check_can_start(cfg)
        if write_hydra:
            _write_hydra_files(dict_cfg, Path(cfg.run_dir) / ".hydra")
        train(cfg)

    # under torchrun only rank 0 writes Hydra's files (.hydra/, the job log) into the run dir
    quiet = ("hydra.output_subdir=null", "hydra/job_logging=stdout")
    defaults = quiet if rank else ("hydra.output_subdir=null",)
    return run_cli(_main, config_name="train", argv=args, hydra_overrides=defaults)


def _write_hydra_files(dict_cfg, folder: Path) -> None:
    """What Hydra's ``output_subdir`` holds: config.yaml, hydra.yaml, overrides.yaml."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hydra_cfg = HydraConfig.get()
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(dict_cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), folder / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(list(hydra_cfg.overrides.task)), folder / "overrides.yaml")


if __name__ == "__main__":
    sys.exit(main())
