"""Demonstrations: the paper's idle-action filter, and storage on disk (memory-mapped).

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

import torch
from tensordict import TensorDict, TensorDictBase

__all__ = [
    "IDLE_ROTATION",
    "IDLE_TRANSLATION",
    "UnsafeDemosError",
    "held_out_episodes",
    "is_demos_folder",
    "is_idle",
    "load_demos",
    "save_demos",
]

# Paper's idle-action filter (issue #3 / RL4VLA demo collection): a step is idle when its
# translation norm is < 0.01 m and its Euler-delta norm < 0.06 rad, and the gripper is unchanged.
IDLE_TRANSLATION = 0.01
IDLE_ROTATION = 0.06


def is_idle(
    actions: torch.Tensor,
    *,
    translation_tol: float = IDLE_TRANSLATION,
    rotation_tol: float = IDLE_ROTATION,
) -> torch.Tensor:
    """Which steps of ONE episode's actions ``[T, 7]`` are idle.

    A step is idle when ``||a[:3]|| < translation_tol`` and ``||a[3:6]|| < rotation_tol`` and
    the gripper command (its sign: ``>= 0`` open, ``< 0`` closed) equals the previous step's.
    The first step is never idle (there is no previous gripper command).

    Args:
        actions: env-unit actions of one episode, in time order.
        translation_tol: metres.
        rotation_tol: radians (norm of the Euler delta).

    Returns:
        bool ``[T]``.

    Examples:
        >>> a = torch.tensor([[0.0, 0, 0, 0, 0, 0, 1.0],    # first step: kept
        ...                   [0.005, 0, 0, 0, 0, 0, 1.0],  # tiny move, same gripper: idle
        ...                   [0.0, 0, 0, 0, 0, 0, -1.0],   # gripper closes: kept
        ...                   [0.0, 0.02, 0, 0, 0, 0, -1.0]])  # 2 cm move: kept
        >>> is_idle(a).tolist()
        [False, True, False, False]
    """
    if actions.ndim != 2 or actions.shape[-1] != 7:
        raise ValueError(f"actions of shape {tuple(actions.shape)}; expected [T, 7]")
    still = (actions[:, :3].norm(dim=-1) < translation_tol) & (
        actions[:, 3:6].norm(dim=-1) < rotation_tol
    )
    grip = actions[:, 6] >= 0
    same_grip = torch.zeros_like(still)
    same_grip[1:] = grip[1:] == grip[:-1]
    return still & same_grip


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


def is_demos_folder(path: str | Path, *, extra_files: tuple[str, ...] = ()) -> bool:
    """Whether ``path`` is a folder :func:`save_demos` wrote: a ``meta.json`` at its top and
    nothing but tensordict's files (``meta.json``, ``*.memmap``, their sub-folders) and the
    named ``extra_files`` at its top (e.g. ``summary.json``).

    What ``vla-torchrl-collect overwrite=true`` checks before replacing a folder, so that it
    never deletes one holding anything else.

    Examples:
        >>> import tempfile
        >>> folder = save_demos(TensorDict({"a": torch.zeros(3)}, [3]), tempfile.mkdtemp())
        >>> is_demos_folder(folder)
        True
        >>> _ = (folder / "notes.txt").write_text("mine")
        >>> is_demos_folder(folder)
        False
    """
    root = Path(path)
    if root.is_symlink() or not (root / "meta.json").is_file():
        return False
    for item in root.rglob("*"):
        if item.is_symlink():
            return False
        if item.is_dir():
            continue
        if item.parent == root and item.name in extra_files:
            continue
        if not (item.name == "meta.json" or item.suffix == ".memmap"):
            return False
    return True


class UnsafeDemosError(ValueError):
    """A demonstrations folder holds pickled data; :func:`load_demos` refuses to unpickle it."""


# file names under which tensordict 0.14 stores pickled non-tensor fields (``other.pickle`` of a
# NonTensorData / tensorclass, ``pickle.pkl`` of a NonTensorStack); strings are stored as JSON
_PICKLE_SUFFIXES = (".pickle", ".pkl")


def load_demos(path: str | Path) -> TensorDictBase:
    """Open demonstrations written by :func:`save_demos` (memory-mapped, not copied).

    Demonstration sets are shared, so loading never unpickles: unpickling runs whatever code the
    file names. Tensors are raw memory maps and strings (instructions) are JSON in ``meta.json``;
    a folder holding a pickle file is refused before anything is read, and tensordict is told
    ``allow_pickle=False`` for the rest.

    Raises:
        FileNotFoundError: ``path`` holds no ``meta.json``.
        UnsafeDemosError: a pickled field, named in the message (one line).
    """
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no saved demonstrations (no meta.json); use save_demos"
        )
    for file in sorted(path.rglob("*")):
        if file.suffix in _PICKLE_SUFFIXES:
            raise UnsafeDemosError(
                f"{file}: demonstrations must not hold pickled data (unpickling can run code), "
                f"refusing to load {path}; write the set with save_demos / vla-torchrl-collect "
                "using only tensors and strings"
            )
    try:
        return TensorDict.load_memmap(path, allow_pickle=False)
    except RuntimeError as err:
        if "pickle" not in str(err).lower():
            raise
        raise UnsafeDemosError(
            f"{path}: demonstrations refer to pickled data (unpickling can run code), refusing "
            "to load them; write the set with save_demos / vla-torchrl-collect using only "
            "tensors and strings"
        ) from None


def held_out_episodes(
    episode_ids: torch.Tensor, fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and held-out frames: ``fraction`` of the episodes (at least one
    when ``fraction > 0``), whole, drawn with ``seed``.

    Examples:
        >>> train, held = held_out_episodes(torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), 0.25)
        >>> len(train), len(held), set(train.tolist()).isdisjoint(held.tolist())
        (6, 2, True)
    """
    episodes = torch.unique(episode_ids)
    order = episodes[torch.randperm(len(episodes), generator=torch.Generator().manual_seed(seed))]
    n_held = max(1, int(len(episodes) * fraction)) if fraction > 0 else 0
    held = torch.isin(episode_ids, order[:n_held])
    return torch.nonzero(~held).squeeze(-1), torch.nonzero(held).squeeze(-1)
