"""Crash-safe training checkpoints: atomic directories, checksummed manifest, verified loads.

Layout of one checkpoint, ``<run_dir>/checkpoints/step_<step:012d>/``::

    tensors.safetensors   model tensors (LoRA adapters, value head): safetensors, no pickle
    optimizer.pt          optimizer states (torch.save; loaded with weights_only=True)
    rng.pt                Python / NumPy / torch (CPU, CUDA) RNG states, as tensors and lists
    counters.json         step counters and anything JSON (env steps, updates, wall clock)
    extra/<name>          caller's files (e.g. the resolved config YAML)
    manifest.json         written last: every file above with its sha256 and size

A save is written into ``.tmp-step_<step>-<pid>/``, each file and the directory are fsync'ed, and
the directory is renamed into place, so a crash (even SIGKILL) leaves either a complete
checkpoint or a ``.tmp-*`` directory that :meth:`CheckpointManager.latest` ignores. ``latest``
and ``load`` verify the manifest and every checksum: a truncated or corrupt file is never
picked, and loading it explicitly raises :class:`CheckpointError` naming the file.

Written here rather than reusing ``torch.distributed.checkpoint`` because we want one small
pickle-free format with per-file checksums and RNG capture for single-process runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vla_torchrl.errors import CheckpointError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointManager",
    "capture_rng_states",
    "check_finite",
    "check_saved_dtypes",
    "check_tensors",
    "is_disk_full",
    "replace_directory",
    "restore_rng_states",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
OPTIMIZER = "optimizer.pt"
RNG = "rng.pt"
COUNTERS = "counters.json"
EXTRA_DIR = "extra"
_STEP_DIR = re.compile(r"^step_(\d+)$")
# the way out of a damaged checkpoint, as the training CLI spells it (TrainConfig.resume)
_OLDER = (
    "resume from an older one (resume=<its step>; resume=true picks the newest that verifies) "
    "or restart (resume=from_scratch)"
)


@dataclass
class Checkpoint:
    """Everything :meth:`CheckpointManager.load` returns."""

    path: Path
    step: int
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_states: dict[str, Any] = field(default_factory=dict)
    rng_states: dict[str, Any] | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, bytes] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- RNG


def capture_rng_states() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch (CPU, and every CUDA device when present).

    The result holds only tensors, lists, ints, floats, strings and None, so it round-trips
    through ``torch.save`` / ``torch.load(weights_only=True)``.

    Examples:
        >>> states = capture_rng_states()
        >>> a = (random.random(), np.random.rand(), torch.rand(1).item())
        >>> restore_rng_states(states)
        >>> (random.random(), np.random.rand(), torch.rand(1).item()) == a
        True
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available():
        states["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return states


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Restore states from :func:`capture_rng_states` (CUDA ones only when CUDA is present)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = states["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = list(states["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def _check_rng_states(states: Mapping[str, Any], file: Path) -> None:
    """Try ``states`` out (restore them, then put the current states back)."""
    current = capture_rng_states()
    try:
        restore_rng_states(states)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint file {file} holds no valid RNG states ({type(err).__name__}: {err}); "
            + _OLDER
        ) from err
    finally:
        restore_rng_states(current)


# ------------------------------------------------------------------------------------ helpers


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _unshared_cpu(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies where needed: safetensors refuses tensors that share memory
    (tied weights, views of one buffer), so every tensor after the first on a storage is cloned."""
    out, seen = {}, set()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"tensors[{name!r}] is a {type(tensor).__name__}, not a torch.Tensor; put "
                "non-tensor state in counters (JSON) or optimizer_states"
            )
        t = tensor.detach().to("cpu").contiguous()
        key = t.untyped_storage().data_ptr()
        if key in seen and t.numel() > 0:
            t = t.clone()
        seen.add(key)
        out[name] = t
    return out


def _check_name(name: str) -> None:
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts:
        raise CheckpointError(
            f"extra file name {name!r} must be a relative path inside the checkpoint "
            "(no '..', not absolute)"
        )


def _read(file: Path, reader: Callable[[Path], Any], kind: type | None = None) -> Any:
    """``reader(file)``, with any failure (or a result that is not a ``kind``) turned into a
    :class:`CheckpointError` naming the file."""
    try:
        value = reader(file)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint file {file} cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); " + _OLDER
        ) from err
    if kind is not None and not isinstance(value, kind):
        raise CheckpointError(
            f"checkpoint file {file} holds a {type(value).__name__}, expected a "
            f"{kind.__name__}; " + _OLDER
        )
    return value


def check_tensors(
    loaded: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], *, where: str
) -> None:
    """Check that ``loaded`` has exactly the names, shapes and dtypes of ``expected`` and only
    finite floating-point values.

    Args:
        loaded: tensors read from a checkpoint.
        expected: the tensors they will be copied into (e.g. the trainable parameters).
        where: the checkpoint, for the message.

    Raises:
        CheckpointError: naming the missing, unexpected, mis-shaped or mis-typed tensors, or
            one holding NaN / inf.

    Examples:
        >>> check_tensors({"w": torch.zeros(2, 3)}, {"w": torch.zeros(2, 4)}, where="ckpt")
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.CheckpointError: ckpt does not match the model being resumed: shape of w: [2, 3] in the checkpoint, [2, 4] in the model; resume with the config the checkpoint was written with (e.g. the same model.lora_rank), or start a new run_dir
    """
    problems = []
    for name in sorted(set(expected) & set(loaded)):
        a, b = loaded[name], expected[name]
        if a.dtype != b.dtype:
            raise CheckpointError(
                f"{where}: tensor {name} is {str(a.dtype).removeprefix('torch.')}, the model "
                f"expects {str(b.dtype).removeprefix('torch.')}; resume with the config the "
                "checkpoint was written with (e.g. the same model.dtype), or start a new run_dir"
            )
        if a.is_floating_point() and not bool(torch.isfinite(a).all()):
            raise CheckpointError(
                f"{where}: tensor {name} holds NaN or inf values; the run diverged before this "
                "save, " + _OLDER
            )
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    if missing:
        problems.append(f"missing {len(missing)} tensor(s), e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}")
    for name in sorted(set(expected) & set(loaded)):
        a, b = loaded[name], expected[name]
        if tuple(a.shape) != tuple(b.shape):
            problems.append(
                f"shape of {name}: {list(a.shape)} in the checkpoint, {list(b.shape)} in the model"
            )
            if len(problems) >= 5:
                break
    if problems:
        raise CheckpointError(
            f"{where} does not match the model being resumed: {'; '.join(problems)}; resume with "
            "the config the checkpoint was written with (e.g. the same model.lora_rank), or "
            "start a new run_dir"
        )


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def check_saved_dtypes(
    path: str | os.PathLike, expected: Mapping[str, torch.Tensor], *, fix: str
) -> None:
    """Refuse a safetensors file whose tensors have other dtypes than the ``expected`` ones
    they will be copied into (read from the file's header; nothing else is loaded).

    Args:
        path: the safetensors file.
        expected: name -> the tensor (e.g. parameter) it is loaded into.
        fix: what to do, for the message.

    Raises:
        CheckpointError: one line naming the file, the tensor and both dtypes.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as fh:
            saved = {k: fh.get_slice(k).get_dtype() for k in fh.keys()}  # noqa: SIM118 - safe_open is no dict
    except Exception as err:
        raise CheckpointError(
            f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]}); {fix}"
        ) from err
    for name in sorted(set(saved) & set(expected)):
        want = expected[name].dtype
        got = _SAFETENSORS_DTYPES.get(saved[name])
        if got != want:
            shown = saved[name] if got is None else str(got).removeprefix("torch.")
            raise CheckpointError(
                f"{path}: tensor {name} is {shown}, the model expects "
                f"{str(want).removeprefix('torch.')}; {fix}"
            )


def check_finite(tensors: Mapping[str, torch.Tensor], *, where: str, fix: str) -> None:
    """Refuse NaN / inf in floating-point ``tensors`` (one line naming ``where`` and the tensor)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{where}: tensor {name} holds NaN or inf values; {fix}")


def is_disk_full(err: BaseException, where: str | os.PathLike) -> bool:
    """Whether ``err`` (from a write under ``where``) means the disk is full: ENOSPC, the
    "os error 28" of safetensors, or torch.save's zip writer failing ("unexpected pos", "file
    write failed") while under 64 MiB are left there."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    text = str(err)
    if "os error 28" in text or "No space left on device" in text:
        return True
    if "unexpected pos" in text or "file write failed" in text:
        try:
            return shutil.disk_usage(where).free < 64 << 20
        except OSError:
            return False
    return False


def replace_directory(tmp: Path, final: Path) -> None:
    """Put the complete directory ``tmp`` in place of ``final`` (renames only: a reader sees the
    old or the new one, a crash leaves at worst the old one under a ``.trash-`` name)."""
    old = None
    if final.exists():
        old = final.parent / f".trash-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class CheckpointManager:
    """Save, find and load checkpoints of one run.

    Args:
        run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
        keep_last: complete checkpoints kept; older ones are deleted after each save.

    Examples:
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> manager = CheckpointManager(tmp, keep_last=2)
        >>> path = manager.save(10, tensors={"w": torch.ones(2)}, counters={"env_steps": 10})
        >>> ckpt = manager.load(manager.latest())
        >>> ckpt.step, ckpt.tensors["w"].tolist(), ckpt.counters["env_steps"]
        (10, [1.0, 1.0], 10)
    """

    def __init__(self, run_dir: str | os.PathLike, *, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise CheckpointError(f"keep_last={keep_last} must be >= 1 (checkpoints kept)")
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    # ----------------------------------------------------------------------------------- save

    def save(
        self,
        step: int,
        *,
        tensors: Mapping[str, torch.Tensor] | None = None,
        optimizer_states: Mapping[str, Any] | None = None,
        rng_states: Mapping[str, Any] | None | bool = True,
        counters: Mapping[str, Any] | None = None,
        extra_files: Mapping[str, bytes] | None = None,
    ) -> Path:
        """Write a checkpoint atomically and prune old ones.

        Args:
            step: the step counter (environment steps); names the directory.
            tensors: tensors to store in safetensors (moved to CPU, made contiguous).
            optimizer_states: e.g. ``{"policy": opt.state_dict()}``.
            rng_states: RNG states; ``True`` (default) captures the current ones, None skips.
            counters: JSON-serialisable counters.
            extra_files: ``{relative name: bytes}``.

        Returns:
            The final checkpoint directory.
        """
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"step={step!r} must be a non-negative integer")
        if rng_states is True:
            rng_states = capture_rng_states()
        elif rng_states is False:
            rng_states = None
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step_{step:012d}"
        tmp = self.root / f".tmp-step_{step:012d}-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            written: list[str] = []
            save_file(_unshared_cpu(tensors or {}), str(tmp / TENSORS))
            written.append(TENSORS)
            torch.save(dict(optimizer_states or {}), tmp / OPTIMIZER)
            written.append(OPTIMIZER)
            if rng_states is not None:
                torch.save(dict(rng_states), tmp / RNG)
                written.append(RNG)
            _write_bytes(tmp / COUNTERS, json.dumps(dict(counters or {}), indent=1).encode())
            written.append(COUNTERS)
            for name, data in (extra_files or {}).items():
                _check_name(name)
                _write_bytes(tmp / EXTRA_DIR / name, bytes(data))
                written.append(f"{EXTRA_DIR}/{name}")
            files = {}
            for rel in written:
                path = tmp / rel
                _fsync_file(path)
                files[rel] = {"sha256": _sha256(path), "size": path.stat().st_size}
            manifest = {
                "format": FORMAT_VERSION,
                "step": step,
                "created_unix": time.time(),
                "files": files,
            }
            _write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
            if (tmp / EXTRA_DIR).exists():
                _fsync_dir(tmp / EXTRA_DIR)
            _fsync_dir(tmp)
            if final.exists():  # the same step saved again (e.g. after a resume): replace it
                self._discard(final)
            os.rename(tmp, final)
            _fsync_dir(self.root)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(err, self.root):
                raise CheckpointError(
                    f"disk full at {self.root}: checkpoint step {step} was not written (the "
                    "earlier ones are intact); free space there (or lower keep_last) and rerun "
                    "with resume=true to continue from the last checkpoint"
                ) from err
            raise
        self._prune(keep=final)
        return final

    def _discard(self, path: Path) -> None:
        trash = self.root / f".trash-{path.name}-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(path, trash)  # atomic: the name disappears before the contents do
        shutil.rmtree(trash, ignore_errors=True)

    def _prune(self, *, keep: Path) -> None:
        complete = [p for p in self.checkpoints() if p != keep]
        excess = len(complete) + 1 - self.keep_last
        for path in complete[: max(0, excess)]:
            self._discard(path)
        # leftovers of crashed saves/deletions by earlier processes of this run
        for path in self.root.iterdir():
            if path.name.startswith((".tmp-", ".trash-")) and f"-{os.getpid()}-" not in path.name:
                shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------------------ discovery

    def checkpoints(self) -> list[Path]:
        """Checkpoint directories by name (complete or not), oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name))
        ]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest checkpoint that verifies (manifest + every checksum), or None."""
        for path in reversed(self.checkpoints()):
            try:
                self.verify(path)
            except CheckpointError:
                continue
            return path
        return None

    def verify(self, path: str | os.PathLike) -> dict[str, Any]:
        """Check the manifest and every file's size and sha256; return the manifest.

        Raises:
            CheckpointError: naming the missing, truncated or corrupt file.
        """
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise CheckpointError(
                f"{manifest_path} is missing: the checkpoint {path} is incomplete (a save was "
                "interrupted); " + _OLDER
            )
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            step = int(manifest["step"])
            if not isinstance(files, dict):
                raise TypeError(f"'files' is a {type(files).__name__}, not a mapping")
        except Exception as err:  # bad JSON, wrong types, absurd nesting: never trust it
            raise CheckpointError(
                f"{manifest_path} is corrupt ({type(err).__name__}: {err}); the checkpoint "
                "cannot be trusted; " + _OLDER
            ) from err
        if manifest.get("format") != FORMAT_VERSION:
            raise CheckpointError(
                f"{manifest_path}: format {manifest.get('format')!r} is not supported "
                f"(expected {FORMAT_VERSION})"
            )
        for rel, meta in files.items():
            try:
                _check_name(rel)
                size_expected, sha_expected = int(meta["size"]), str(meta["sha256"])
            except Exception as err:
                raise CheckpointError(
                    f"{manifest_path} is corrupt: bad entry {rel!r}: {meta!r} ({err}); " + _OLDER
                ) from err
            file = path / rel
            if not file.is_file():
                raise CheckpointError(f"checkpoint file {file} is missing (listed in manifest)")
            size = file.stat().st_size
            if size != size_expected:
                raise CheckpointError(
                    f"checkpoint file {file} is truncated or altered: {size} bytes, the manifest "
                    f"says {size_expected}; " + _OLDER
                )
            if _sha256(file) != sha_expected:
                raise CheckpointError(
                    f"checkpoint file {file} is corrupt: its sha256 differs from the manifest; "
                    + _OLDER
                )
        manifest["step"] = step
        return manifest

    # ----------------------------------------------------------------------------------- load

    def load(
        self, path: str | os.PathLike | None = None, *, map_location: str | torch.device = "cpu"
    ) -> Checkpoint:
        """Verify and load a checkpoint (default: :meth:`latest`).

        Raises:
            CheckpointError: no checkpoint, or a missing/truncated/corrupt file (named).
        """
        if path is None:
            path = self.latest()
            if path is None:
                raise CheckpointError(
                    f"no complete checkpoint under {self.root}; start a fresh run "
                    "(resume=false) or point to a checkpoint directory"
                )
        path = Path(path)
        manifest = self.verify(path)
        files = manifest["files"]
        ckpt = Checkpoint(path=path, step=manifest["step"])
        device = str(map_location)
        # The checksums only prove the files are the ones the manifest names; a file can still
        # be unreadable (a manifest rewritten by hand, a bug in an older writer): name it.
        if TENSORS in files:
            ckpt.tensors = _read(path / TENSORS, lambda f: load_file(str(f), device=device))
        if OPTIMIZER in files:
            ckpt.optimizer_states = _read(
                path / OPTIMIZER,
                lambda f: torch.load(f, map_location=map_location, weights_only=True),
                dict,
            )
        if RNG in files:
            ckpt.rng_states = _read(
                path / RNG, lambda f: torch.load(f, map_location="cpu", weights_only=True), dict
            )
            _check_rng_states(ckpt.rng_states, path / RNG)
        if COUNTERS in files:
            ckpt.counters = _read(path / COUNTERS, lambda f: json.loads(f.read_text()), dict)
        prefix = EXTRA_DIR + "/"
        ckpt.extra_files = {
            rel[len(prefix) :]: (path / rel).read_bytes() for rel in files if rel.startswith(prefix)
        }
        return ckpt
