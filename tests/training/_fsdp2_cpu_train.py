"""``vla-torchrl-train`` with ``dist.strategy=fsdp2`` on the CPU (gloo), for tests only.

The config refuses fsdp2 without CUDA (it saves no memory on one machine's CPU); this entry point
lifts that one check so that the FSDP2 code path of the recipe runs end to end in CI:
``python -m torch.distributed.run --nproc-per-node 2 _fsdp2_cpu_train.py <Hydra overrides>``.
"""

from __future__ import annotations

import sys

import vla_torchrl.config.train_schema as config

config._validate_dist = lambda cfg, *, cuda_available: None

from vla_torchrl.recipes.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
