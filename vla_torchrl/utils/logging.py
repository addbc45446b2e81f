"""Logging setup: one readable line per record, on stderr."""

from __future__ import annotations

import logging

__all__ = ["setup_logging"]

_FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


def setup_logging(level: int | str = "INFO") -> logging.Logger:
    """Configure the ``vla_torchrl`` logger (idempotent) and return it.

    Examples:
        >>> logger = setup_logging("WARNING")
        >>> logger.name, logger.level == logging.WARNING
        ('vla_torchrl', True)
    """
    logger = logging.getLogger("vla_torchrl")
    if isinstance(level, str):
        level = level.upper()
    logger.setLevel(level)
    if not any(getattr(h, "_vla_torchrl", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        handler._vla_torchrl = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    return logger
