"""The package's user-facing errors: fixable by the user, reported in one line (see recipes._cli)."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "UserError"]


class UserError(Exception):
    """An error the user can fix (bad input, missing file); reported in one line, no traceback.

    Examples:
        >>> str(UserError("lr=-1 must be positive; set optim.lr to e.g. 1e-4"))
        'lr=-1 must be positive; set optim.lr to e.g. 1e-4'
    """


class ConfigError(UserError, ValueError):
    """A configuration value is invalid (a :class:`UserError` and a ``ValueError``)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, incomplete or corrupt, or does not match the model: a training
    checkpoint (:mod:`vla_torchrl.training.checkpointing`) or a model's checkpoint directory
    (:mod:`vla_torchrl.modules.checkpoint`). One class for both, so one ``except`` catches both."""
