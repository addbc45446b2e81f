"""Workers end with their parent, also on SIGKILL of the parent (issue 17 item 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

# The parent: starts a worker through in_worker (as ParallelEnv's create_env_fn runs), prints
# the worker's pid, then waits to be killed.
PARENT = """
import multiprocessing as mp, sys, time
from vla_torchrl.utils.lifetime import in_worker
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    child = ctx.Process(target=in_worker, args=(time.sleep, 120))
    child.start()
    time.sleep(0.5)  # let the child register its death signal
    print(child.pid, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie awaiting its reaper counts as ended
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks /proc (Linux)")
def test_worker_ends_when_its_parent_is_sigkilled():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the worker outlived its SIGKILLed parent"
    finally:
        parent.kill()


def test_parallel_env_workers_are_built_through_in_worker(monkeypatch):
    from vla_torchrl.envs import builder
    from vla_torchrl.utils.lifetime import in_worker

    seen = {}

    def fake_parallel(num_envs, fns, **kwargs):
        seen["fns"] = fns
        raise RuntimeError("stop before building scenes")

    monkeypatch.setattr(builder, "ParallelEnv", fake_parallel)
    with pytest.raises(RuntimeError, match="stop before"):
        builder.make_env("ind", num_envs=2, sim_backend="cpu", parallel=True)
    assert len(seen["fns"]) == 2 and all(fn.func is in_worker for fn in seen["fns"])
