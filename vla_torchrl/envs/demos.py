"""Demonstrations on disk as TorchRL memory-mapped storage.

Examples:
    >>> import tempfile, torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"action": torch.ones(2, 3, 7)}, [2, 3])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     back = load_demos(save_demos(td, d))
    ...     bool((back["action"] == 1).all()), tuple(back.batch_size)
    (True, (2, 3))
"""

from __future__ import annotations

from pathlib import Path

from tensordict import TensorDict, TensorDictBase

__all__ = ["load_demos", "save_demos"]


def save_demos(td: TensorDictBase, path: str | Path) -> Path:
    """Write ``td`` (e.g. ``[episodes, T]`` rollouts) as a memory-mapped tensordict at ``path``.

    Args:
        td: the demonstrations.
        path: a directory (created; must not hold another tensordict).

    Returns:
        the path.
    """
    path = Path(path)
    td.memmap(path)
    return path


def load_demos(path: str | Path) -> TensorDictBase:
    """Open demonstrations written by :func:`save_demos` (memory-mapped, not copied)."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no saved demonstrations (no meta.json); use save_demos"
        )
    return TensorDict.load_memmap(path)
