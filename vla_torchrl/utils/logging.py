"""Logging setup: one readable line per record, on stderr."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

__all__ = ["progress", "setup_logging"]


class _CurrentStderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at each record.

    A plain ``StreamHandler()`` keeps the stream it was created with; when that stream is later
    replaced and closed (pytest's output capture, a notebook cell, a redirect) every record then
    fails with "I/O operation on closed file".
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ / setStream assign it
        pass


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
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        handler._vla_torchrl = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def progress(
    total: int,
    *,
    initial: int = 0,
    desc: str = "env steps",
    unit: str = "step",
    disable: bool | None = None,
    iterable: Iterable | None = None,
):
    """A tqdm progress bar with rate and ETA, for long loops (``initial`` for resumed runs).

    Disabled automatically when stderr is not a terminal (logs of batch jobs stay clean), unless
    ``disable=False``.

    Examples:
        >>> bar = progress(100, initial=20, disable=True)
        >>> bar.total, bar.disable
        (100, True)
        >>> bar.close()
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        unit_scale=True,
        dynamic_ncols=True,
        smoothing=0.1,
        disable=disable,
    )
