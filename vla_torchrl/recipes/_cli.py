"""User-facing errors and the wrapper every entry point runs under.

A mistake by the user (a bad config value, a missing file, a corrupt checkpoint) should end the
program with ONE readable line and a non-zero exit status, not a traceback. A bug should still
show its traceback. ``run_cli`` draws that line: :class:`UserError` and OmegaConf/Hydra config
errors are reported in one line (exit status 2); anything else propagates unchanged.
``--debug`` on the command line (or ``VLA_TORCHRL_DEBUG=1``) shows the traceback for everything.

Hydra's ``@hydra.main`` catches exceptions and prints its own trimmed traceback unless
``HYDRA_FULL_ERROR`` is set; ``run_cli`` sets it for the duration of the call so that the
exceptions reach us, then restores the environment.

Every command line takes Hydra overrides. The ``--flag`` spellings of the command lines from
before that (``vla-torchrl-eval --policy RL=DIR --seeds 0,1``, ...) still work for one release:
:func:`translate_flags` turns them into the same overrides and prints one deprecation line
naming the new spelling (``run_cli(..., legacy=...)``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vla_torchrl.errors import UserError

__all__ = [
    "DEBUG_ENV",
    "Flag",
    "compose_cli_config",
    "format_user_error",
    "hydra_quote",
    "run_cli",
    "translate_flags",
]

DEBUG_ENV = "VLA_TORCHRL_DEBUG"
USER_ERROR_EXIT = 2


def _config_error_types() -> tuple[type[BaseException], ...]:
    from vla_torchrl.assets import MissingAssetError

    types: list[type[BaseException]] = [UserError, MissingAssetError]
    try:
        from omegaconf.errors import OmegaConfBaseException

        types.append(OmegaConfBaseException)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    try:
        from hydra.errors import HydraException

        types.append(HydraException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def format_user_error(err: BaseException) -> str:
    """One line describing ``err`` (newlines folded), for the end of a failed run.

    Examples:
        >>> format_user_error(ConfigError("bad value\\n  full_key: algo.clip"))
        'error: bad value | full_key: algo.clip'
    """
    parts = [line.strip() for line in str(err).splitlines() if line.strip()]
    cause = err.__cause__
    # Hydra wraps OmegaConf errors; the cause often holds the useful part.
    if cause is not None and not isinstance(cause, UserError):
        parts += [line.strip() for line in str(cause).splitlines() if line.strip()]
    # Hydra appends its config search path to "could not find" errors: noise for the user
    parts = list(dict.fromkeys(parts))
    # Hydra advises "+key=value" for a key the config lacks, which our schema then refuses
    # (unknown keys are mistakes): say that the key does not exist instead
    advice = [p for p in parts if p.startswith("To append to your config use +")]
    if advice:
        parts = [p for p in parts if p not in advice]
        parts.append(
            "no such config key (python -m vla_torchrl.recipes.show_config prints every key)"
        )
    if "Config search path:" in parts:
        parts = parts[: parts.index("Config search path:")]
    text = " | ".join(parts) or type(err).__name__
    return f"error: {text}"


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def run_cli(
    main_fn: Callable[..., Any],
    *,
    config_name: str | None = None,
    config_path: str | None = None,
    argv: Sequence[str] | None = None,
    hydra_overrides: Sequence[str] = (),
    legacy: Callable[[list[str]], list[str]] | None = None,
    compose: bool = False,
    open_keys: Sequence[str] = (),
) -> int:
    """Run an entry point; user errors end in one line on stderr and exit status 2.

    Two modes:

    - ``config_name`` given: ``main_fn(cfg: DictConfig)`` runs under ``hydra.main`` with the
      config ``config_name`` from ``config_path`` (default: ``vla_torchrl/config/conf/``); the
      command line is Hydra's (overrides like ``algo=grpo optim.lr=3e-4``).
    - ``config_name`` and ``compose=True``: the same config and overrides, composed with Hydra's
      compose API, then ``main_fn(cfg)`` runs outside Hydra (no output directory, no log
      handlers, and the task may compose configs itself, e.g. a study's training runs);
    - otherwise: ``main_fn(argv: list[str])`` is called with the remaining arguments and may
      return an exit status.

    Args:
        main_fn: the entry point.
        config_name: Hydra primary config name (e.g. ``"train"``), or None for plain mode.
        config_path: directory of the Hydra configs (absolute, or relative to this file).
        argv: arguments without the program name (default ``sys.argv[1:]``).
        hydra_overrides: overrides placed before the user's (e.g. ``hydra.output_subdir=null``
            for tools that should leave no Hydra output directory).
        legacy: turns the arguments of a deprecated spelling into Hydra overrides (see
            :func:`translate_flags`); its errors are user errors like the others.
        open_keys: compose mode: mappings whose entries the user names (e.g. ``policies``):
            ``policies.RL=DIR`` adds or replaces an entry without Hydra's ``+`` / ``++``.

    Returns:
        The exit status (0 on success); callers do ``sys.exit(run_cli(main))``.

    Examples:
        >>> def main(argv):
        ...     raise UserError("seed=-1 must be >= 0; pass a non-negative seed")
        >>> run_cli(main, argv=[])  # prints "error: seed=-1 ..." on stderr
        2
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    args = [a for a in args if a != "--debug"]
    catch = () if debug else _config_error_types()
    try:
        if compose and config_name is not None and {"--help", "-h"} & set(args):
            rest = [a for a in args if a not in ("--help", "-h")]
            print(compose_help(main_fn, config_name, legacy(rest) if legacy else rest, config_path))
            return 0
        if legacy is not None:
            args = legacy(args)
        if config_name is None:
            status = main_fn(args)
            return int(status or 0)
        if compose:
            cfg = compose_cli_config(
                config_name, args, config_path=config_path, open_keys=open_keys
            )
            return int(main_fn(cfg) or 0)
        return _run_hydra(
            main_fn,
            config_name=config_name,
            config_path=config_path,
            args=[*args, *_unless_given(hydra_overrides, args)],
            catch=catch,
        )
    except catch as err:  # type: ignore[misc]
        hint = "" if debug else f" (rerun with --debug or {DEBUG_ENV}=1 for the traceback)"
        print(format_user_error(err) + hint, file=sys.stderr, flush=True)
        return USER_ERROR_EXIT


def compose_help(
    main_fn: Callable[..., Any],
    config_name: str,
    overrides: Sequence[str] = (),
    config_path: str | None = None,
) -> str:
    """``--help`` of a compose-mode tool: its module's usage text, then every setting with
    its default (the composed ``conf/<config_name>.yaml``, with ``overrides`` applied)."""
    from omegaconf import OmegaConf

    module = sys.modules.get(getattr(main_fn, "__module__", ""), None)
    usage = (getattr(module, "__doc__", None) or "").strip()
    cfg = compose_cli_config(config_name, overrides, config_path=config_path)
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return (
        f"{usage}\n\nSettings and their defaults (conf/{config_name}.yaml; change any with "
        f"key=value, e.g. env=toy or seeds=[0,1]):\n\n{OmegaConf.to_yaml(cfg, resolve=False)}"
    )


def _conf_dir(config_path: str | None) -> str:
    if config_path is not None:
        return config_path
    # the Hydra YAML lives next to the schema it fills (vla_torchrl/config/conf/)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(here, "config", "conf")


def compose_cli_config(
    config_name: str,
    overrides: Sequence[str],
    *,
    config_path: str | None = None,
    open_keys: Sequence[str] = (),
) -> Any:
    """``conf/<config_name>.yaml`` with ``overrides`` (Hydra's compose API), as a DictConfig.

    An override of an entry of one of ``open_keys`` (``policies.RL=DIR``) is made Hydra's
    add-or-replace (``++policies.RL=DIR``): those mappings hold the user's own names.

    Raises:
        UserError: an argument that is no ``key=value`` override, or one Hydra cannot parse.
    """
    from hydra import compose, initialize_config_dir

    overrides = [
        f"++{a}" if a.split("=", 1)[0].split(".", 1)[0] in open_keys and "." in a.split("=", 1)[0]
        else a
        for a in overrides
    ]  # fmt: skip

    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise UserError(
            f"unknown option(s) {' '.join(flags)}: this command takes key=value overrides "
            "(Hydra), e.g. out=DIR seeds=[0,1]"
        )
    with initialize_config_dir(config_dir=_conf_dir(config_path), version_base="1.3"):
        try:
            return compose(config_name=config_name, overrides=list(overrides))
        except ValueError as err:  # Hydra's own parser errors, e.g. a group set to ``true``
            raise UserError(f"bad command line {' '.join(overrides)!r}: {err}") from err


def _unless_given(defaults: Sequence[str], args: Sequence[str]) -> list[str]:
    """The default overrides whose key the user did not set (appended after the user's
    arguments: Hydra's parser wants flags before positional overrides)."""

    def key(item: str) -> str:
        return item.split("=", 1)[0].lstrip("+~")

    given = {key(a) for a in args if "=" in a and not a.startswith("-")}
    return [d for d in defaults if key(d) not in given]


def _run_hydra(
    main_fn: Callable[..., Any],
    *,
    config_name: str,
    config_path: str | None,
    args: list[str],
    catch: tuple[type[BaseException], ...],
) -> int:
    import hydra

    config_path = _conf_dir(config_path)
    result: dict[str, Any] = {}

    def task(cfg: Any) -> None:
        # A user error raised by the task is carried out of Hydra, which would otherwise print
        # "Error executing job with overrides: ..." before re-raising it.
        result["started"] = True
        try:
            result["status"] = main_fn(cfg)
        except catch as err:  # type: ignore[misc]
            result["error"] = err

    wrapped = hydra.main(config_path=config_path, config_name=config_name, version_base="1.3")(task)
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [saved_argv[0] if saved_argv else "vla_torchrl", *args]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach run_cli instead of Hydra's printer
    try:
        wrapped()
    except Exception as err:
        # Before the task starts, Hydra only parses the command line and composes the config;
        # it raises plain ValueErrors for some bad overrides (e.g. ``algo=true``): user errors.
        if catch and "started" not in result:
            if isinstance(err, OSError):  # e.g. the run directory cannot be created
                where = err.filename if err.filename is not None else "the output directory"
                raise UserError(
                    f"cannot write {where}: {err.strerror or err}; choose a directory you can "
                    "write to (run_dir=... / out=...)"
                ) from err
            raise UserError(f"bad command line {' '.join(args)!r}: {err}") from err
        raise
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
    if "error" in result:
        raise result["error"]
    return int(result.get("status") or 0)


# -- the deprecated --flag spellings ------------------------------------------------------------
FlagKind = Literal["str", "num", "csv_str", "csv_num", "on", "off", "append", "pairs", "pairs_num"]


@dataclass(frozen=True)
class Flag:
    """A deprecated ``--flag`` and the Hydra override it becomes.

    ``kind``: ``str`` (``--out X`` -> ``out='X'``), ``num`` (``--episodes 8`` -> ``episodes=8``),
    ``csv_str`` / ``csv_num`` (``--seeds 0,1`` -> ``seeds=[0,1]``), ``on`` / ``off`` (a switch ->
    ``key=true`` / ``key=false``, or ``key=<const>``), ``append`` (repeated ``--metric a`` ->
    ``metrics=['a']``), ``pairs`` / ``pairs_num`` (repeated ``--policy L=D`` ->
    ``policies={L:'D'}``).
    """

    key: str
    kind: FlagKind = "str"
    const: str | None = None


def hydra_quote(text: str) -> str:
    """``text`` as a quoted Hydra value (quotes escaped, and the backslashes before them).

    Examples:
        >>> print(hydra_quote("runs/it's here"))
        'runs/it\\'s here'
    """
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _pairs(items: Sequence[str], flag: str, number: bool) -> str:
    parts = []
    seen: dict[str, str] = {}
    for item in items:
        label, sep, value = item.rpartition("=") if number else item.partition("=")
        if not sep or not label or not value:
            raise UserError(
                f"{flag} {item!r} must look like LABEL=VALUE, e.g. {flag} RL=runs/ppo/policy"
            )
        if label in seen:  # the mapping would silently keep the second only
            raise UserError(
                f"{flag} label {label!r} is given twice ({seen[label]} and {item}); give each "
                "its own label"
            )
        seen[label] = item
        if not re.fullmatch(r"[A-Za-z0-9_.+\-]+", label):
            raise UserError(f"{flag} {item!r}: the label may hold letters, digits and _ . + - only")
        if number:
            try:
                float(value)
            except ValueError as err:
                raise UserError(
                    f"{flag} {item!r}: expected LABEL=NUMBER, e.g. SFT-16k=0.78"
                ) from err
        parts.append(f"{label}:{value if number else hydra_quote(value)}")
    return "{" + ",".join(parts) + "}"


def translate_flags(
    argv: Sequence[str],
    flags: Mapping[str, Flag],
    *,
    prog: str,
    positional: Flag | None = None,
    rest: Callable[[list[str]], list[str]] = list,
) -> list[str]:
    """The Hydra overrides that mean what the deprecated ``--flag`` arguments ``argv`` meant.

    Arguments already in the new spelling pass through unchanged, and so does ``argv`` when it
    uses none of ``flags``; otherwise one deprecation line on stderr shows the new spelling.

    Args:
        argv: the command line (without the program name).
        flags: ``--flag`` -> :class:`Flag`.
        prog: the program name, for the deprecation line.
        positional: the override the old positional arguments become (a ``csv``-less list
            for ``append``, a single value otherwise), or None when there were none.
        rest: maps the arguments left over (e.g. ``key=value`` overrides) to the new spelling.

    Examples:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()):
        ...     translate_flags(["--seeds", "0,1", "--greedy", "out=x"],
        ...                     {"--seeds": Flag("seeds", "csv_num"), "--greedy": Flag("greedy", "on")},
        ...                     prog="tool")
        ['seeds=[0,1]', 'greedy=true', 'out=x']
    """
    args = list(argv)
    used = any(a.split("=", 1)[0] in flags for a in args if a.startswith("--"))
    if not used:
        return args
    parser = argparse.ArgumentParser(prog=prog, add_help=False)
    for name, flag in flags.items():
        dest = name.lstrip("-").replace("-", "_")
        if flag.kind in ("on", "off"):
            parser.add_argument(name, dest=dest, action="store_true", default=None)
        elif flag.kind in ("append", "pairs", "pairs_num"):
            parser.add_argument(name, dest=dest, action="append")
        else:
            parser.add_argument(name, dest=dest)
    if positional is not None:
        parser.add_argument("_positional", nargs="*")
    try:
        opts, left = parser.parse_known_intermixed_args(args)
    except SystemExit as err:  # argparse's own message is already on stderr
        raise UserError(f"{prog}: bad deprecated --flag arguments {args}") from err
    out: list[str] = []
    if positional is not None and opts._positional:
        values = [a for a in opts._positional if "=" not in a]
        left = [a for a in opts._positional if "=" in a] + left
        if values:
            out.append(
                f"{positional.key}=[{','.join(map(hydra_quote, values))}]"
                if positional.kind == "append"
                else f"{positional.key}={hydra_quote(values[0])}"
            )
    for name, flag in flags.items():
        value = getattr(opts, name.lstrip("-").replace("-", "_"))
        if value is None:
            continue
        kind, key = flag.kind, flag.key
        if kind == "on":
            out.append(f"{key}={flag.const or 'true'}")
        elif kind == "off":
            out.append(f"{key}={flag.const or 'false'}")
        elif kind == "num":
            out.append(f"{key}={value}")
        elif kind == "str":
            out.append(f"{key}={hydra_quote(value)}")
        elif kind == "csv_num":
            out.append(f"{key}=[{','.join(_csv(value))}]")
        elif kind == "csv_str":
            out.append(f"{key}=[{','.join(map(hydra_quote, _csv(value)))}]")
        elif kind == "append":
            out.append(f"{key}=[{','.join(map(hydra_quote, value))}]")
        else:
            out.append(f"{key}={_pairs(value, name, kind == 'pairs_num')}")
    out += rest(left)
    print(
        f"{prog}: the --flag spelling is deprecated and goes in the next release; the same as: "
        f"{prog} {' '.join(out)}",
        file=sys.stderr,
        flush=True,
    )
    return out
