"""What defines an evaluation result group, so that a reused group is never a stale one.

``vla-torchrl-eval`` keeps finished (label, task, seed) groups in ``<out>/episodes.jsonl`` and a
second call into the same ``--out`` continues instead of redoing them. A group may only be
reused when it was made by the same thing: the same policy files (a content hash of the policy
directory), the same number of episodes, sampling (greedy, or the temperature), image size,
episode length, backend and env batch. Each group's completion line stores these
:func:`group_settings`; :func:`check_reusable` refuses, in one line naming what changed, to mix
groups made otherwise into one report.

Labels name files (``<out>/videos/<label>-<task>-0.gif``) and report columns, so they must be
plain names (:func:`check_label`), and one label names one policy (:func:`parse_policies`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vla_torchrl.errors import UserError

__all__ = [
    "LABEL_PATTERN",
    "check_label",
    "make_out_dir",
    "check_reusable",
    "group_settings",
    "parse_policies",
    "policy_fingerprint",
]

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")


def check_label(label: str) -> str:
    """Refuse a policy label that is not a plain name (it becomes part of file names).

    Examples:
        >>> check_label("RL-ppo_1.5")
        'RL-ppo_1.5'
        >>> check_label("../../X")
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.UserError: --policy label '../../X' is not a plain name: labels name files under --out, so use letters, digits and _ . + - only (e.g. --policy RL=runs/ppo/policy)
    """
    if not isinstance(label, str) or not LABEL_PATTERN.match(label) or label in (".", ".."):
        raise UserError(
            f"--policy label {label!r} is not a plain name: labels name files under --out, so "
            "use letters, digits and _ . + - only (e.g. --policy RL=runs/ppo/policy)"
        )
    return label


def parse_policies(items: Iterable[str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """``["LABEL=DIR", ...]`` (or ``(label, dir)`` pairs) -> ``{label: dir}``, checked.

    Raises:
        UserError: an item is not ``LABEL=DIR``, a label is not a plain name, or a label is
            given twice (the second would silently replace the first).

    Examples:
        >>> parse_policies(["SFT=runs/sft/policy", "RL=runs/ppo/policy"])
        {'SFT': 'runs/sft/policy', 'RL': 'runs/ppo/policy'}
        >>> parse_policies(["A=p1", "A=p2"])
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.UserError: --policy label 'A' is given twice (A=p1 and A=p2); give each policy its own label
    """
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            label, sep, path = item.partition("=")
            if not sep or not label or not path:
                raise UserError(
                    f"--policy {item!r} must look like LABEL=DIR, e.g. RL=runs/ppo/policy"
                )
        else:
            label, path = item
        check_label(label)
        if label in out:
            raise UserError(
                f"--policy label {label!r} is given twice ({label}={out[label]} and "
                f"{label}={path}); give each policy its own label"
            )
        out[label] = str(path)
    return out


def policy_fingerprint(directory: str | os.PathLike) -> str:
    """sha256 over the relative names and contents of every file of a saved policy directory.

    The same files give the same fingerprint wherever they are copied; any changed byte
    (retrained weights, other statistics in ``policy.json``) gives another. It reads every
    byte once (about a second per GB).
    """
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root).as_posix()).encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def group_settings(
    *,
    policy: str,
    episodes: int,
    backend: str,
    num_envs: int,
    max_episode_steps: int,
    width: int,
    height: int,
    greedy: bool,
    temperature: float,
    env_options: Mapping[str, Any] | None = None,
    transforms: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Everything a (label, task, seed) group's numbers depend on, as stored with the group.

    ``policy`` is :func:`policy_fingerprint` of the policy directory. ``env_options`` and
    ``transforms`` are stored only when given (groups written before they existed stay valid).
    """
    extra: dict[str, Any] = {}
    if env_options:
        extra["env_options"] = json.loads(json.dumps(dict(env_options), sort_keys=True))
    if transforms:
        extra["transforms"] = json.loads(json.dumps([dict(t) for t in transforms]))
    return {
        **extra,
        "policy": policy,
        "episodes": int(episodes),
        "backend": backend,
        "num_envs": int(num_envs),
        "max_episode_steps": int(max_episode_steps),
        "width": int(width),
        "height": int(height),
        "sampling": "greedy" if greedy else f"temperature={float(temperature)!r}",
    }


_FLAGS = {
    "policy": "the policy files (--policy)",
    "episodes": "--episodes",
    "backend": "--backend",
    "num_envs": "--num-envs",
    "max_episode_steps": "--max-steps",
    "width": "--width",
    "height": "--height",
    "sampling": "--greedy/--temperature",
    "env_options": "env.options",
    "transforms": "env.transforms",
}


def check_reusable(
    stored: Mapping[tuple[str, str, int], Mapping[str, Any] | None],
    wanted: Mapping[str, Mapping[str, Any]],
    *,
    results_file: str | os.PathLike,
) -> None:
    """Refuse to continue an evaluation whose finished groups were made with other settings.

    Args:
        stored: ``{(label, task, seed): settings or None}`` of the finished groups in the
            results file (None: written without settings, by an older version).
        wanted: ``{label: group_settings(...)}`` of this evaluation.
        results_file: for the message.

    Raises:
        UserError: one line naming the group, what differs (old -> new) and the way out.
    """
    for (label, task, seed), old in sorted(stored.items(), key=lambda kv: kv[0]):
        new = wanted.get(label)
        if new is None or old == new:
            continue
        if not isinstance(old, Mapping):
            what = "settings not recorded (an older version wrote it)"
        else:
            diffs = []
            for key in {**old, **new}:
                if old.get(key) != new.get(key):
                    if key == "policy":
                        diffs.append("other policy files under the same label")
                    else:
                        flag = _FLAGS.get(key, key)
                        diffs.append(f"{flag} {old.get(key)!r} -> {new.get(key)!r}")
            what = "; ".join(diffs) or "other settings"
        raise UserError(
            f"{results_file} already holds {label} on {task} seed {seed} made with other "
            f"settings ({what}); its numbers would be reported as this run's: use another "
            "--out (or another label), or delete that file to start the evaluation again"
        )


def make_out_dir(path: str | os.PathLike) -> Path:
    """Create the evaluation's ``--out`` directory, or say in one line why it cannot be.

    Examples:
        >>> make_out_dir("/dev/null/x")
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.UserError: --out='/dev/null/x' cannot be created (Not a directory); pass a directory you can write to
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"--out={str(out)!r} cannot be created ({err.strerror or err}); pass a directory "
            "you can write to"
        ) from err
    return out
