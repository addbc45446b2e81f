"""Hydra DictConfig / plain mappings -> the validated config dataclasses (unknown keys and wrong types refused)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from vla_torchrl.config.train_schema import TrainConfig
from vla_torchrl.errors import ConfigError

__all__ = ["build_config", "compose_config", "to_train_config"]

T = TypeVar("T")


def _type_ok(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Check (and mildly coerce: int -> float) ``value`` against a type annotation."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            ok, coerced = _type_ok(value, arg)
            if ok:
                return True, coerced
        return False, value
    if origin is Literal:
        return value in typing.get_args(annotation), value
    if annotation is type(None):
        return value is None, value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    if origin is dict:
        return isinstance(value, Mapping), value
    if origin is list:
        if not isinstance(value, list | tuple):
            return False, value
        (item_type,) = typing.get_args(annotation) or (Any,)
        out = []
        for item in value:
            ok, coerced = _type_ok(item, item_type)
            if not ok:
                return False, value
            out.append(coerced)
        return True, out
    return True, value


def _describe(annotation: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if annotation in names:
        return names[annotation]
    if typing.get_origin(annotation) is list:
        return "a list"
    if typing.get_origin(annotation) is dict:
        return "a mapping (key: value)"
    if typing.get_origin(annotation) is Literal:
        return " or ".join(str(a) for a in typing.get_args(annotation))
    args = typing.get_args(annotation)
    parts = [a for a in args if a is not type(None)]
    if not parts:
        return str(annotation)
    text = " or ".join(_describe(p) for p in parts)
    return f"{text} or null" if len(parts) < len(args) else text


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} in {where}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name} must be a group (mapping), got {value!r}")
            kwargs[name] = _build(annotation, value, f"{prefix}{name}.")
            continue
        if typing.get_origin(annotation) is Literal and isinstance(value, str):
            kwargs[name] = value  # __post_init__ names the allowed choices and what to do
            continue
        ok, coerced = _type_ok(value, annotation)
        if not ok:
            allowed = (
                typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ""
            )
            what = f"one of {', '.join(map(repr, allowed))}" if allowed else _describe(annotation)
            raise ConfigError(f"{prefix}{name}={value!r} is invalid: expected {what}")
        kwargs[name] = coerced
    return cls(**kwargs)


def build_config(cls: type[T], cfg: Any) -> T:
    """Build the config dataclass ``cls`` from a Hydra ``DictConfig`` (or a plain mapping).

    Interpolations are resolved, ``hydra`` (Hydra's own node) is dropped, and the rest goes
    through the same checks as every recipe's config: keys missing in ``cfg`` take the dataclass
    defaults; an unknown key or a wrong type raises :class:`ConfigError` naming the full key.

    Examples:
        >>> build_config(TrainConfig, {"seed": 3, "hydra": {"run": {}}}).seed
        3
        >>> build_config(TrainConfig, {"optim": {"lr": "fast"}})
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.ConfigError: optim.lr='fast' is invalid: expected a number
    """
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    data = {k: v for k, v in dict(cfg).items() if k != "hydra"}
    return _build(cls, data, "")


def to_train_config(cfg: Any) -> TrainConfig:
    """Build a :class:`TrainConfig` from a Hydra ``DictConfig`` (or a plain dict).

    Keys missing in ``cfg`` take the dataclass defaults; unknown keys and wrong types raise
    :class:`ConfigError` naming the full key. ``hydra`` (Hydra's own node) is ignored.

    Examples:
        >>> to_train_config({"algo": {"name": "grpo", "critic": "none", "group_size": 8}}).algo.name
        'grpo'
        >>> to_train_config({"optim": {"lr": -1e-4}})
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.ConfigError: optim.lr=-0.0001 must be > 0 (a learning rate; the paper uses 1e-4 for LoRA and 3e-3 for the value head)
    """
    return build_config(TrainConfig, cfg)


def compose_config(
    overrides: list[str] | None = None, *, config_name: str = "train"
) -> TrainConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides, outside of ``hydra.main``.

    Examples:
        >>> compose_config(["algo=ppo-orz"], config_name="train_cpu").algo.gamma
        1.0
    """
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    conf_dir = str(Path(__file__).resolve().parent / "conf")
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        try:
            raw = compose(config_name=config_name, overrides=list(overrides or []))
        except ValueError as err:  # Hydra's own parser errors, e.g. a group set to ``true``
            raise ConfigError(f"bad override(s) {list(overrides or [])}: {err}") from err
    return to_train_config(raw)
