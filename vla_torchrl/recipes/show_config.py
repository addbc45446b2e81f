"""Compose, validate and print a training config (a dry run of a recipe's config step).

Usage::

    python -m vla_torchrl.recipes.show_config algo=grpo env.task=table
    python -m vla_torchrl.recipes.show_config --config-name train_cpu optim.lr=3e-4

Hydra's command line; a bad value ends with one line naming it (``--debug`` for a traceback).
"""

from __future__ import annotations

import dataclasses
import json
import sys

from vla_torchrl.config.load import to_train_config
from vla_torchrl.config.train_schema import validate
from vla_torchrl.recipes._cli import run_cli


def main(cfg) -> int:
    """Hydra task: validate ``cfg`` and print it as JSON."""
    train_cfg = validate(to_train_config(cfg))
    print(json.dumps(dataclasses.asdict(train_cfg), indent=2))
    return 0


if __name__ == "__main__":
    # a dry run: no Hydra output directory, no log files
    quiet = (
        "hydra.output_subdir=null",
        "hydra.run.dir=.",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    )
    sys.exit(run_cli(main, config_name="train", hydra_overrides=quiet))
