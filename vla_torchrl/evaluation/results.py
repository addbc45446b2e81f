"""Per-episode evaluation results: the record, loading it from lists / CSV / JSONL, the incremental store.

An :class:`EpisodeResult` is ``(policy, task, seed, episode_id, grasped, continuous_grasp,
success)``; :func:`load_results` reads them from a list, a CSV or a JSONL file, and
:class:`IncrementalResults` appends them per (policy, task, seed) as an evaluation finishes them.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from vla_torchrl.errors import UserError

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "EpisodeResult",
    "IncrementalResults",
    "Metric",
    "load_results",
    "merge_results",
]

Metric = Literal["grasped", "continuous_grasp", "success"]


METRICS: tuple[str, ...] = ("grasped", "continuous_grasp", "success")


METRIC_LABELS = {"grasped": "Acc.", "continuous_grasp": "Cont. Acc.", "success": "Suc."}


@dataclass(frozen=True)
class EpisodeResult:
    """Metrics of one evaluation episode (each the value at the episode's last step)."""

    policy: str
    task: str
    seed: int
    episode_id: int
    grasped: bool
    continuous_grasp: bool
    success: bool

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> EpisodeResult:
        """Parse a dict (e.g. a CSV row, all strings) into a result, checking every field."""
        missing = [f.name for f in fields(cls) if f.name not in row]
        if missing:
            raise UserError(
                f"result record {dict(row)!r} lacks {', '.join(missing)}; each record needs "
                f"{', '.join(f.name for f in fields(cls))}"
            )
        try:
            return cls(
                policy=str(row["policy"]),
                task=str(row["task"]),
                seed=int(row["seed"]),
                episode_id=int(row["episode_id"]),
                **{m: _as_bool(m, row[m]) for m in METRICS},
            )
        except ValueError as err:
            raise UserError(f"result record {dict(row)!r} is malformed: {err}") from err


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "1.0", "yes"):
            return True
        if low in ("0", "false", "0.0", "no"):
            return False
        raise ValueError(f"{name}={value!r} is not a boolean")
    if hasattr(value, "item"):
        value = value.item()
    if value in (0, 1):  # also True/False
        return bool(value)
    raise ValueError(f"{name}={value!r} is not a boolean (0/1)")


def load_results(source: str | os.PathLike | Iterable[Any]) -> list[EpisodeResult]:
    """Episode results from a ``.csv`` / ``.jsonl`` file or an iterable of dicts/results.

    Examples:
        >>> rows = [dict(policy="RL", task="ind", seed=0, episode_id=0, grasped=1,
        ...              continuous_grasp=1, success=0)]
        >>> load_results(rows)[0].success
        False
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise UserError(f"results file {path} does not exist")
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                rows: Iterable[Any] = list(csv.DictReader(fh))
        elif path.suffix in (".jsonl", ".json"):
            if IncrementalResults.is_incremental_file(path):
                return IncrementalResults(path).results()
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            raise UserError(f"results file {path}: unknown format; use .csv or .jsonl")
    else:
        rows = source
    return [r if isinstance(r, EpisodeResult) else EpisodeResult.from_mapping(r) for r in rows]


def merge_results(sources: Iterable[str | os.PathLike | Iterable[Any]]) -> list[EpisodeResult]:
    """The episode results of several sources (:func:`load_results` each), in order.

    For policies evaluated at different times on the same episodes (same tasks, seeds, episode
    ids and env settings): a new checkpoint against an earlier evaluation of the baseline, paired
    episode by episode without running the baseline again. An episode (policy, task, seed,
    episode id) found in two sources is an error naming both: rename one policy's label.

    Examples:
        >>> row = dict(task="ind", seed=0, episode_id=0, grasped=1, continuous_grasp=1)
        >>> rows = merge_results([[dict(row, policy="SFT", success=0)],
        ...                       [dict(row, policy="RL", success=1)]])
        >>> [(r.policy, r.success) for r in rows]
        [('SFT', False), ('RL', True)]
        >>> merge_results([[dict(row, policy="RL", success=0)], [dict(row, policy="RL", success=1)]])
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.UserError: episode (policy RL, task ind, seed 0, episode 0) is in source 1 and in source 2; each episode of a policy must come from one evaluation: give the policy another label in one of them (or leave one out)
    """
    merged: list[EpisodeResult] = []
    origin: dict[tuple, str] = {}
    for number, source in enumerate(sources, start=1):
        name = str(source) if isinstance(source, str | os.PathLike) else f"source {number}"
        rows = load_results(source)
        for r in rows:
            key = (r.policy, r.task, r.seed, r.episode_id)
            if key in origin and origin[key] != name:
                raise UserError(
                    f"episode (policy {r.policy}, task {r.task}, seed {r.seed}, episode "
                    f"{r.episode_id}) is in {origin[key]} and in {name}; each episode of a policy "
                    "must come from one evaluation: give the policy another label in one of them "
                    "(or leave one out)"
                )
            origin.setdefault(key, name)
        merged.extend(rows)
    return merged


class IncrementalResults:
    """Append-only per-episode results of an evaluation that may be interrupted and resumed.

    Each (policy, task, seed) group is appended in one go: its episode lines, then a completion
    line with the same attempt id, each flushed and fsync'ed. On reading, episodes of a group
    without its completion line (an interrupted write) are ignored, so a resumed evaluation
    skips the complete groups (:meth:`is_complete`) and redoes only the unfinished one.

    Examples:
        >>> import tempfile
        >>> store = IncrementalResults(Path(tempfile.mkdtemp()) / "episodes.jsonl")
        >>> store.is_complete("RL", "ind", 0)
        False
        >>> store.append_group("RL", "ind", 0, [dict(episode_id=0, grasped=1,
        ...                    continuous_grasp=1, success=1)])
        >>> store.is_complete("RL", "ind", 0), len(store.results())
        (True, 1)
    """

    _MARK = "_vla_torchrl_results"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def is_incremental_file(cls, path: Path) -> bool:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        return cls._MARK in first

    def _lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # cut short by a crash
        return out

    def _complete_attempts(self, lines) -> dict[tuple[str, str, int], str]:
        done = {}
        for rec in lines:
            if rec.get("kind") == "complete":
                done[(rec["policy"], rec["task"], int(rec["seed"]))] = rec["attempt"]
        return done

    def completed_settings(self) -> dict[tuple[str, str, int], dict[str, Any] | None]:
        """``{(policy, task, seed): settings}`` of the complete groups (their latest attempt);
        None for a group written without settings (see :mod:`vla_torchrl.evaluation.groups`)."""
        out = {}
        for rec in self._lines():
            if rec.get("kind") == "complete":
                out[(rec["policy"], rec["task"], int(rec["seed"]))] = rec.get("settings")
        return out

    def completed(self) -> set[tuple[str, str, int]]:
        """The (policy, task, seed) groups fully written."""
        return set(self._complete_attempts(self._lines()))

    def is_complete(self, policy: str, task: str, seed: int) -> bool:
        """Whether the group is already complete (skip it when resuming)."""
        return (policy, task, int(seed)) in self.completed()

    def pending(
        self, policies: Iterable[str], tasks: Iterable[str], seeds: Iterable[int]
    ) -> list[tuple[str, str, int]]:
        """The (policy, task, seed) groups still to evaluate, in loop order.

        Examples:
            >>> import tempfile
            >>> store = IncrementalResults(Path(tempfile.mkdtemp()) / "e.jsonl")
            >>> store.append_group("RL", "ind", 0, [dict(episode_id=0, grasped=0,
            ...                    continuous_grasp=0, success=0)])
            >>> store.pending(["RL"], ["ind", "table"], [0, 1])
            [('RL', 'ind', 1), ('RL', 'table', 0), ('RL', 'table', 1)]
        """
        done = self.completed()
        tasks, seeds = list(tasks), [int(s) for s in seeds]
        return [(p, t, s) for p in policies for t in tasks for s in seeds if (p, t, s) not in done]

    def append_group(
        self,
        policy: str,
        task: str,
        seed: int,
        episodes: Iterable[Mapping[str, Any]],
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Append the episodes of one (policy, task, seed) group, then mark it complete.

        Args:
            episodes: dicts with ``episode_id``, ``grasped``, ``continuous_grasp``, ``success``.
            settings: what made the group (stored in its completion line, returned by
                :meth:`completed_settings`).
        """
        attempt = uuid.uuid4().hex
        rows = []
        for ep in episodes:
            result = EpisodeResult.from_mapping(
                {**ep, "policy": policy, "task": task, "seed": seed}
            )
            rows.append({"kind": "episode", "attempt": attempt, **asdict(result)})
        if not rows:
            raise UserError(f"no episodes for ({policy}, {task}, seed {seed}); nothing to append")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        ends_cleanly = new_file or self._ends_with_newline()
        with open(self.path, "a", encoding="utf-8") as fh:
            if not ends_cleanly:
                fh.write("\n")  # a crash left half a line: do not glue our first line to it
            if new_file:
                fh.write(json.dumps({"kind": "header", self._MARK: 1}) + "\n")
            for row in rows:
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done = {"kind": "complete", "attempt": attempt, "policy": policy, "task": task}
            done.update(seed=int(seed), n_episodes=len(rows))
            if settings is not None:
                done["settings"] = dict(settings)
            fh.write(json.dumps(done) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def results(self) -> list[EpisodeResult]:
        """Episode results of the complete groups (latest complete attempt of each)."""
        lines = self._lines()
        done = self._complete_attempts(lines)
        out = []
        for rec in lines:
            if rec.get("kind") != "episode":
                continue
            key = (rec["policy"], rec["task"], int(rec["seed"]))
            if done.get(key) == rec["attempt"]:
                out.append(EpisodeResult.from_mapping(rec))
        return out
