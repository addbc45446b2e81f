"""The policy a run held at one of its checkpoints, written as a saved policy.

A run writes ``<run_dir>/policy`` once, at its end; along the way its checkpoints
(``<run_dir>/checkpoints/step_<N>``, the last ``keep_last`` of them) hold the trained tensors.
:func:`export_checkpoint_policy` turns one checkpoint into a policy that ``vla-torchrl-eval``
and ``model.init_from`` read, e.g. the policy a PPO run had reached at a wall-clock budget
(issue 14: the 90-minute mark of a longer run), or an earlier step to compare with the end::

    python -m vla_torchrl.training.checkpoint_policy runs/ppo/checkpoints/step_000000102400 \\
        runs/ppo-102k/policy

The checkpoint's own copy of the run's config (``extra/config.json``) rebuilds the policy, so
a relative ``model.init_from`` resolves from the directory the run was started in. SFT runs
whose action statistics come from their demonstrations (``algo.norm_stats=demos``) are refused:
their checkpoints do not hold the statistics; such runs write ``policy-best`` / ``policy-last``
as they go.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vla_torchrl.config.load import to_train_config
from vla_torchrl.errors import UserError
from vla_torchrl.training.checkpointing import CheckpointManager
from vla_torchrl.training.policy import build_policy_from_config, save_policy

__all__ = ["export_checkpoint_policy", "main"]

_CONFIG = "config.json"


def export_checkpoint_policy(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the policy held by ``checkpoint`` (a ``step_<N>`` directory) to ``out``.

    Returns:
        ``out``, a policy directory (``policy.json`` + tensors) as a run's ``policy``.

    Raises:
        UserError: the checkpoint is incomplete or corrupt, has no config, is an SFT run with
            statistics from its demonstrations, or its tensors do not fit the policy its config
            builds (:meth:`~vla_torchrl.modules.factory.PolicyBundle.load_trainable_state`).
    """
    checkpoint = Path(checkpoint)
    if not (checkpoint / "manifest.json").is_file():
        raise UserError(
            f"{str(checkpoint)!r} is not a checkpoint directory (no manifest.json); pass "
            "<run_dir>/checkpoints/step_<N>"
        )
    # verified (manifest and every checksum) and loaded as the run would resume from it
    saved = CheckpointManager(checkpoint.parent.parent).load(checkpoint)
    config = saved.extra_files.get(_CONFIG)
    if config is None:
        raise UserError(f"{str(checkpoint)!r} holds no extra/{_CONFIG}: cannot rebuild its policy")
    cfg = to_train_config(json.loads(config))
    if cfg.algo.name == "sft" and cfg.algo.norm_stats == "demos":
        raise UserError(
            f"{str(checkpoint)!r} is an SFT run with algo.norm_stats=demos: its checkpoints do "
            "not hold the action statistics; use the run's policy-best / policy-last / policy"
        )
    bundle = build_policy_from_config(
        cfg.model, cfg.algo, lr=cfg.optim.lr, value_lr=cfg.optim.value_lr
    )
    try:
        bundle.load_trainable_state(saved.tensors, source=repr(str(checkpoint)))
    except ValueError as err:  # names or shapes that do not fit the policy its config builds
        raise UserError(str(err)) from err
    return save_policy(bundle, out, cfg.model, cfg.algo)


def main(argv: list[str] | None = None) -> int:
    """``python -m vla_torchrl.training.checkpoint_policy CHECKPOINT OUT``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(
            "usage: python -m vla_torchrl.training.checkpoint_policy CHECKPOINT OUT",
            file=sys.stderr,
        )
        return 2
    try:
        out = export_checkpoint_policy(*args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"policy written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
