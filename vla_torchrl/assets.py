"""Where the optional data assets live, resolved in one place.

The project runs without any external file: a procedural asset set, a robot that ships with
ManiSkill (Panda) and a small built-in tokenizer stand in. When the real assets are present
(the WidowX-250S description, the RL4VLA objects/receptacles/tables, the Llama-2 tokenizer
model), this module finds them, in this order:

1. an explicit path (a config value, e.g. ``env.asset_root=/data/assets``);
2. the environment variable ``VLA_TORCHRL_ASSETS``;
3. ``../shared/assets`` next to a checkout of this repository, when it exists.

The folder layout is the one of ``shared/assets`` (see its README)::

    <root>/maniskill/data/robots/widowx/wx250s.urdf    robot (ManiSkill looks under $MS_ASSET_DIR/data)
    <root>/rl4vla/more_carrot|more_plate|more_table/    the paper's scene assets
    <root>/llama2-tokenizer/tokenizer.model             the Llama-2 SentencePiece model

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from vla_torchrl.assets import AssetPaths
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "llama2-tokenizer").mkdir()
    >>> _ = (root / "llama2-tokenizer" / "tokenizer.model").write_bytes(b"")
    >>> paths = AssetPaths.resolve(root)  # an explicit path wins over the other sources
    >>> paths.tokenizer_model.name, paths.widowx_urdf  # only what exists is reported
    ('tokenizer.model', None)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ASSETS_ENV_VAR",
    "REQUIRE_ASSETS_ENV_VAR",
    "AssetPaths",
    "MissingAssetError",
    "configure_maniskill_assets",
    "apply_assets_policy",
    "fall_back",
    "set_assets_policy",
]

logger = logging.getLogger(__name__)

ASSETS_ENV_VAR = "VLA_TORCHRL_ASSETS"
#: ``1``: a missing real asset is an error instead of a fallback (``assets=required`` of the CLIs
#: sets it, so that env worker processes inherit it)
REQUIRE_ASSETS_ENV_VAR = "VLA_TORCHRL_REQUIRE_ASSETS"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_SIBLING_SHARED_ASSETS = _REPO_ROOT.parent / "shared" / "assets"
_REPORTED: set[str] = set()


def _log_once(key: str, message: str, *args: object) -> None:
    """Log ``message`` once per process for ``key`` (asset fallbacks are reported once, not per env)."""
    if key not in _REPORTED:
        _REPORTED.add(key)
        logger.info(message, *args)


class MissingAssetError(FileNotFoundError):
    """A real asset is missing and ``assets=required`` forbids its fallback."""


def set_assets_policy(policy: str) -> None:
    """``"required"``: from now on (this process and the processes it starts) a missing real
    asset raises :class:`MissingAssetError`; ``"auto"``: the built-in fallbacks are used.

    Examples:
        >>> set_assets_policy("required"); os.environ[REQUIRE_ASSETS_ENV_VAR]
        '1'
        >>> set_assets_policy("auto"); REQUIRE_ASSETS_ENV_VAR in os.environ
        False
    """
    if policy not in ("auto", "required"):
        raise ValueError(f"assets={policy!r} is unknown; use auto (fall back) or required")
    if policy == "required":
        os.environ[REQUIRE_ASSETS_ENV_VAR] = "1"
    else:
        os.environ.pop(REQUIRE_ASSETS_ENV_VAR, None)


def fall_back(missing: str, fallback: str) -> None:
    """Say (once) that ``missing`` is not found and ``fallback`` stands in, or, under
    ``assets=required``, raise :class:`MissingAssetError` naming it and how to provide it.

    Examples:
        >>> set_assets_policy("required")
        >>> fall_back("the Llama-2 tokenizer.model", "the built-in tokenizer")
        Traceback (most recent call last):
        ...
        vla_torchrl.assets.MissingAssetError: the Llama-2 tokenizer.model was not found and assets=required forbids falling back to the built-in tokenizer: set $VLA_TORCHRL_ASSETS to the asset folder (layout: vla_torchrl/assets.py), or use assets=auto
        >>> set_assets_policy("auto")
    """
    if os.environ.get(REQUIRE_ASSETS_ENV_VAR) == "1":
        raise MissingAssetError(
            f"{missing} was not found and assets=required forbids falling back to {fallback}: "
            f"set ${ASSETS_ENV_VAR} to the asset folder (layout: vla_torchrl/assets.py), or use "
            "assets=auto"
        )
    _log_once(
        f"fallback:{missing}", "vla_torchrl assets: %s not found; using %s", missing, fallback
    )


def apply_assets_policy(policy: str, *, backend: str = "maniskill") -> None:
    """A CLI's ``assets=...``: set it for this process and its children, and under
    ``required`` check up front, in one error, every real asset that ``backend`` would use
    (ManiSkill: the WidowX-250S description and the RL4VLA scenes; the tokenizer is checked
    where a model asks for it).

    Raises:
        MissingAssetError: ``required`` and something is missing (all of it named).
    """
    set_assets_policy(policy)
    if policy != "required" or backend != "maniskill":
        return
    paths = AssetPaths.resolve()
    missing = []
    if paths.rl4vla_dir is None:
        missing.append("the RL4VLA scene assets (<root>/rl4vla/more_carrot, ...)")
    ms_dir = os.environ.get("MS_ASSET_DIR")
    robot = Path(ms_dir) / "data" / "robots" / "widowx" / "wx250s.urdf" if ms_dir else None
    if paths.widowx_urdf is None and not (robot is not None and robot.is_file()):
        missing.append("the WidowX-250S description (<root>/maniskill/data/robots/widowx)")
    if missing:
        where = paths.root or f"no asset root (${ASSETS_ENV_VAR} unset, no ../shared/assets)"
        raise MissingAssetError(
            f"assets=required, but {' and '.join(missing)} are not found (looked in {where}): "
            f"set ${ASSETS_ENV_VAR} to the asset folder, or use assets=auto for the stand-ins"
        )


@dataclass(frozen=True)
class AssetPaths:
    """Resolved locations of the optional assets; each entry is ``None`` when absent.

    Attributes:
        root: the asset root that was found, or ``None``.
        maniskill_dir: the folder to use as ``MS_ASSET_DIR`` (holds ``data/robots/widowx``).
        rl4vla_dir: the paper's scene assets (``more_carrot``, ``more_plate``, ``more_table``).
        tokenizer_model: the Llama-2 ``tokenizer.model`` file.
    """

    root: Path | None
    maniskill_dir: Path | None
    rl4vla_dir: Path | None
    tokenizer_model: Path | None

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> AssetPaths:
        """Find the asset root (explicit path > ``$VLA_TORCHRL_ASSETS`` > ``../shared/assets``).

        An explicit path or environment variable that does not exist is logged and treated as
        absent, so that callers get the built-in fallbacks rather than an error.
        """
        root = _find_root(explicit)
        if root is None:
            return cls(None, None, None, None)
        maniskill = root / "maniskill"
        rl4vla = root / "rl4vla"
        tokenizer = root / "llama2-tokenizer" / "tokenizer.model"
        return cls(
            root=root,
            maniskill_dir=maniskill
            if (maniskill / "data" / "robots" / "widowx").is_dir()
            else None,
            rl4vla_dir=rl4vla if (rl4vla / "more_carrot").is_dir() else None,
            tokenizer_model=tokenizer if tokenizer.is_file() else None,
        )

    @property
    def widowx_urdf(self) -> Path | None:
        """The WidowX-250S URDF when the robot description is present."""
        if self.maniskill_dir is None:
            return None
        urdf = self.maniskill_dir / "data" / "robots" / "widowx" / "wx250s.urdf"
        return urdf if urdf.is_file() else None


def _find_root(explicit: str | os.PathLike[str] | None) -> Path | None:
    candidates: list[tuple[str, Path]] = []
    if explicit is not None and str(explicit) != "":
        candidates.append(("the configured asset_root", Path(explicit).expanduser()))
    env = os.environ.get(ASSETS_ENV_VAR)
    if env:
        candidates.append((f"${ASSETS_ENV_VAR}", Path(env).expanduser()))
    candidates.append(("the checkout's ../shared/assets", _SIBLING_SHARED_ASSETS))
    for source, path in candidates:
        if path.is_dir():
            _log_once(f"root:{path}", "vla_torchrl assets: using %s (%s)", path, source)
            return path.resolve()
        if source != "the checkout's ../shared/assets":
            _log_once(
                f"missing:{path}",
                "vla_torchrl assets: %s points to %s, which does not exist; ignoring it",
                source,
                path,
            )
    _log_once(
        "none",
        "vla_torchrl assets: none found (set $%s to use real assets); "
        "using procedural objects, the Panda robot and the built-in tokenizer",
        ASSETS_ENV_VAR,
    )
    return None


def configure_maniskill_assets(paths: AssetPaths | None = None) -> Path | None:
    """Point ManiSkill's ``MS_ASSET_DIR`` at the robot assets, unless the user already set it.

    Returns:
        the value of ``MS_ASSET_DIR`` in effect afterwards (``None`` when unset).
    """
    paths = paths if paths is not None else AssetPaths.resolve()
    if "MS_ASSET_DIR" not in os.environ and paths.maniskill_dir is not None:
        os.environ["MS_ASSET_DIR"] = str(paths.maniskill_dir)
    value = os.environ.get("MS_ASSET_DIR")
    return Path(value) if value else None
