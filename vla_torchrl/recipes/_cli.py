"""User-facing errors and the wrapper every entry point runs under.

A mistake by the user (a bad config value, a missing file, a corrupt checkpoint) should end the
program with ONE readable line and a non-zero exit status, not a traceback. A bug should still
show its traceback. ``run_cli`` draws that line: :class:`UserError` and OmegaConf/Hydra config
errors are reported in one line (exit status 2); anything else propagates unchanged.
``--debug`` on the command line (or ``VLA_TORCHRL_DEBUG=1``) shows the traceback for everything.

Hydra's ``@hydra.main`` catches exceptions and prints its own trimmed traceback unless
``HYDRA_FULL_ERROR`` is set; ``run_cli`` sets it for the duration of the call so that the
exceptions reach us, then restores the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vla_torchrl.errors import UserError

__all__ = ["DEBUG_ENV", "format_user_error", "run_cli"]

DEBUG_ENV = "VLA_TORCHRL_DEBUG"
USER_ERROR_EXIT = 2


def _config_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UserError]
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
) -> int:
    """Run an entry point; user errors end in one line on stderr and exit status 2.

    Two modes:

    - ``config_name`` given: ``main_fn(cfg: DictConfig)`` runs under ``hydra.main`` with the
      config ``config_name`` from ``config_path`` (default: ``vla_torchrl/config/conf/``); the
      command line is Hydra's (overrides like ``algo=grpo optim.lr=3e-4``).
    - otherwise: ``main_fn(argv: list[str])`` is called with the remaining arguments and may
      return an exit status.

    Args:
        main_fn: the entry point.
        config_name: Hydra primary config name (e.g. ``"train"``), or None for plain mode.
        config_path: directory of the Hydra configs (absolute, or relative to this file).
        argv: arguments without the program name (default ``sys.argv[1:]``).
        hydra_overrides: overrides placed before the user's (e.g. ``hydra.output_subdir=null``
            for tools that should leave no Hydra output directory).

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
        if config_name is None:
            status = main_fn(args)
            return int(status or 0)
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

    if config_path is None:
        # the Hydra YAML lives next to the schema it fills (vla_torchrl/config/conf/)
        config_path = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "conf"
        )
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
