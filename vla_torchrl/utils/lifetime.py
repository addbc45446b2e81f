"""Worker processes that end with their parent, even when the parent is SIGKILLed.

A ``ParallelEnv`` worker holds a whole simulator (ManiSkill: ~1.5 GB). When the training
process is killed with SIGKILL it gets no chance to stop its workers, and they keep running
as orphans. :func:`die_with_parent` (called first thing in the worker) asks the Linux kernel
to SIGKILL the worker when its parent ends (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon
thread polls the parent id and exits the worker when it changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["die_with_parent", "in_worker"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(*, poll_s: float = 1.0) -> str:
    """Make this process end when its parent does; returns how (``"prctl"`` or ``"poll"``).

    Call it in a child process only (it would tie the main program to its shell otherwise).
    """
    parent = os.getppid()
    how = "poll"
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                how = "prctl"
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)
    if how == "poll":

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(poll_s)
            os._exit(1)

        threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    return how


def in_worker(build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)`` after :func:`die_with_parent`: the ``create_env_fn`` of a
    ``ParallelEnv`` worker, e.g. ``functools.partial(in_worker, make_scene, task)``."""
    die_with_parent()
    return build(*args, **kwargs)
