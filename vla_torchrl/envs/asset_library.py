"""Objects, receptacles, table appearances and distractor textures, with the paper's splits.

Two sources, chosen by :meth:`AssetLibrary.load`:

* ``"rl4vla"``: the paper's asset set (RL4VLA release), read from a directory holding
  ``more_carrot/``, ``more_plate/`` and ``more_table/`` (``AssetPaths.resolve().rl4vla_dir``).
  Visual meshes missing from a copy are replaced by the collision mesh with a plain colour.
* ``"procedural"``: no files at all. Objects and receptacles are built from SAPIEN primitives
  (boxes, spheres, capsules, cylinders, and a few compositions of them); table appearances and
  textures are images generated from the seed.

Splits (paper Sec. 5.1 and Appendix A.4): objects 16 train / 9 unseen; tables 16 train /
5 unseen; receptacles 1 training plate / 16 unseen; 16 distractor textures.

Examples:
    >>> lib = AssetLibrary.procedural(seed=0)
    >>> len(lib.objects_train), len(lib.objects_unseen), len(lib.receptacles_unseen)
    (16, 9, 16)
    >>> lib.receptacle_train.name
    'plate'
    >>> lib.tables_train[0].image(size=(48, 64)).shape
    (48, 64, 3)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from vla_torchrl.assets import AssetPaths

__all__ = [
    "AssetLibrary",
    "AssetSource",
    "ImageAsset",
    "Primitive",
    "SceneAsset",
    "resolve_asset_source",
]

logger = logging.getLogger(__name__)

AssetSource = Literal["auto", "rl4vla", "procedural"]

# Paper split sizes (Sec. 5.1 / Appendix A.4).
N_OBJECTS_TRAIN, N_OBJECTS_UNSEEN = 16, 9
N_TABLES_TRAIN, N_TABLES_UNSEEN = 16, 5
N_RECEPTACLES_UNSEEN = 16
N_TEXTURES = 16

Color = tuple[float, float, float, float]


@dataclass(frozen=True)
class Primitive:
    """One primitive shape of a procedural asset (SAPIEN conventions: cylinders/capsules along x).

    Attributes:
        shape: ``"box"`` (``size`` = half extents), ``"sphere"`` (``size[0]`` = radius),
            ``"capsule"``/``"cylinder"`` (``size[0]`` = radius, ``size[1]`` = half length).
        size: the shape parameters above.
        offset: position of the part in the asset frame (metres).
        upright: rotate a capsule/cylinder so that its axis is vertical.
        color: RGBA in [0, 1].
    """

    shape: Literal["box", "sphere", "capsule", "cylinder"]
    size: tuple[float, ...]
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    upright: bool = False
    color: Color = (0.5, 0.5, 0.5, 1.0)

    def half_extents(self) -> np.ndarray:
        """Half extents of the part's axis-aligned bounding box (asset frame, no offset)."""
        if self.shape == "box":
            h = np.array(self.size[:3], dtype=float)
        elif self.shape == "sphere":
            h = np.full(3, self.size[0], dtype=float)
        else:
            r, hl = self.size[0], self.size[1] + (self.size[0] if self.shape == "capsule" else 0.0)
            h = np.array([hl, r, r], dtype=float)
            if self.upright:
                h = np.array([r, r, hl], dtype=float)
        return h


@dataclass(frozen=True)
class SceneAsset:
    """An object or receptacle: a mesh pair or a list of primitives.

    Attributes:
        uid: unique identifier (also the SAPIEN actor name).
        name: natural name used in instructions (``"carrot"``, ``"red block"``).
        bbox_min, bbox_max: axis-aligned bounds in the asset frame, scale applied (metres).
        density: kg/m^3.
        collision_file: convex-decomposed collision mesh (mesh assets).
        visual_file: visual mesh; ``None`` means "use the collision mesh with ``color``".
        scale: uniform mesh scale.
        parts: the primitives (procedural assets).
        color: plain colour for a mesh without a visual file.
    """

    uid: str
    name: str
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    density: float = 1000.0
    collision_file: Path | None = None
    visual_file: Path | None = None
    scale: float = 1.0
    parts: tuple[Primitive, ...] = ()
    color: Color = (0.6, 0.6, 0.6, 1.0)

    @property
    def size(self) -> np.ndarray:
        """Extent of the bounding box (metres)."""
        return np.asarray(self.bbox_max) - np.asarray(self.bbox_min)


@dataclass(frozen=True)
class ImageAsset:
    """A table appearance or texture, loaded or generated on demand.

    Attributes:
        name: natural name.
        loader: returns the full-resolution uint8 ``H x W x 3`` image.
    """

    name: str
    loader: Callable[[], np.ndarray] = field(repr=False)

    def image(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The image as uint8 ``H x W x 3``, resized to ``size = (H, W)`` when given."""
        img = _cached_image(self)
        if size is not None and img.shape[:2] != tuple(size):
            import cv2

            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return img


@cache
def _cached_image(asset: ImageAsset) -> np.ndarray:
    img = np.ascontiguousarray(asset.loader()[..., :3]).astype(np.uint8)
    img.setflags(write=False)
    return img


@dataclass(frozen=True)
class AssetLibrary:
    """The benchmark's assets with the paper's splits.

    Attributes:
        source: ``"rl4vla"`` or ``"procedural"``.
        objects_train: 16 training objects.
        objects_unseen: 9 unseen objects (never used by the training task).
        receptacle_train: the training plate.
        receptacles_unseen: 16 unseen receptacles.
        tables_train: 16 training table appearances.
        tables_unseen: 5 unseen table appearances.
        textures: 16 distractor textures (for the dynamic texture / noise perturbations).
    """

    source: Literal["rl4vla", "procedural"]
    objects_train: tuple[SceneAsset, ...]
    objects_unseen: tuple[SceneAsset, ...]
    receptacle_train: SceneAsset
    receptacles_unseen: tuple[SceneAsset, ...]
    tables_train: tuple[ImageAsset, ...]
    tables_unseen: tuple[ImageAsset, ...]
    textures: tuple[ImageAsset, ...]

    def __post_init__(self) -> None:
        expected = {
            "objects_train": N_OBJECTS_TRAIN,
            "objects_unseen": N_OBJECTS_UNSEEN,
            "receptacles_unseen": N_RECEPTACLES_UNSEEN,
            "tables_train": N_TABLES_TRAIN,
            "tables_unseen": N_TABLES_UNSEEN,
            "textures": N_TEXTURES,
        }
        for attr, n in expected.items():
            got = len(getattr(self, attr))
            if got != n:
                raise ValueError(
                    f"AssetLibrary.{attr} has {got} entries; the paper's split needs {n}. "
                    "Check the asset directory (see shared/assets/README.md)."
                )
        uids = [a.uid for a in (*self.objects, *self.receptacles)]
        if len(set(uids)) != len(uids):
            raise ValueError(f"asset uids must be unique, got duplicates in {uids}")

    @property
    def objects(self) -> tuple[SceneAsset, ...]:
        """All 25 objects (train then unseen)."""
        return self.objects_train + self.objects_unseen

    @property
    def receptacles(self) -> tuple[SceneAsset, ...]:
        """All 17 receptacles (training plate first)."""
        return (self.receptacle_train, *self.receptacles_unseen)

    def pool(
        self,
        name: Literal[
            "objects_train",
            "objects_unseen",
            "receptacle_train",
            "receptacles_unseen",
            "tables_train",
            "tables_unseen",
        ],
    ) -> tuple:
        """A named pool, as a tuple (the training plate as a 1-tuple)."""
        value = getattr(self, name, None)
        if value is None:
            raise ValueError(f"unknown asset pool {name!r}")
        return value if isinstance(value, tuple) else (value,)

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        source: AssetSource = "auto",
        *,
        rl4vla_dir: str | Path | None = None,
        seed: int = 0,
    ) -> AssetLibrary:
        """Build the library from the chosen source.

        Args:
            source: ``"rl4vla"`` (needs the directory), ``"procedural"``, or ``"auto"``
                (``rl4vla`` when its directory is found, else ``procedural``).
            rl4vla_dir: the RL4VLA asset directory; default ``AssetPaths.resolve().rl4vla_dir``.
            seed: seed of the generated images (procedural source).

        Returns:
            the library.
        """
        kind = resolve_asset_source(source, rl4vla_dir=rl4vla_dir)
        if kind == "rl4vla":
            directory = Path(rl4vla_dir) if rl4vla_dir else AssetPaths.resolve().rl4vla_dir
            return _load_rl4vla(directory)  # type: ignore[arg-type]
        return cls.procedural(seed=seed)

    @classmethod
    def procedural(cls, *, seed: int = 0) -> AssetLibrary:
        """The file-free procedural set (names and shapes fixed; images generated from ``seed``)."""
        return _procedural_library(seed)


def resolve_asset_source(
    source: AssetSource, *, rl4vla_dir: str | Path | None = None
) -> Literal["rl4vla", "procedural"]:
    """Which concrete source ``source`` means here (``"auto"`` picks rl4vla when present)."""
    if source not in ("auto", "rl4vla", "procedural"):
        raise ValueError(f"asset_source={source!r}; use 'auto', 'rl4vla' or 'procedural'")
    if source == "procedural":
        return "procedural"
    directory = Path(rl4vla_dir) if rl4vla_dir else AssetPaths.resolve().rl4vla_dir
    found = directory is not None and (directory / "more_carrot").is_dir()
    if source == "rl4vla" and not found:
        raise FileNotFoundError(
            f"asset_source='rl4vla' but no RL4VLA asset directory was found ({directory}); "
            "set $VLA_TORCHRL_ASSETS to a folder holding rl4vla/more_carrot, or use "
            "asset_source='procedural'"
        )
    if source == "auto" and not found:
        from vla_torchrl.assets import fall_back

        fall_back("the RL4VLA scene assets (rl4vla/more_carrot, ...)", "the procedural asset set")
        return "procedural"
    return "rl4vla"


# -- RL4VLA -------------------------------------------------------------------------------------
_MISSING_VISUAL_COLOR: Color = (0.75, 0.7, 0.6, 1.0)


def _mesh_assets(folder: Path) -> list[SceneAsset]:
    db = json.loads((folder / "model_db.json").read_text())
    out = []
    for key in sorted(db):
        entry = db[key]
        scale = float(entry.get("scales", [1.0])[0])
        model_dir = folder / key
        visual = None
        for candidate in ("textured.glb", "textured.dae", "textured.obj"):
            if (model_dir / candidate).is_file():
                visual = model_dir / candidate
                break
        if visual is None:
            logger.info("RL4VLA asset %s has no visual mesh; using its collision mesh", key)
        bbox = entry["bbox"]
        out.append(
            SceneAsset(
                uid=key.replace(" ", "_"),
                name=str(entry["name"]),
                bbox_min=tuple(scale * float(v) for v in bbox["min"]),  # type: ignore[arg-type]
                bbox_max=tuple(scale * float(v) for v in bbox["max"]),  # type: ignore[arg-type]
                density=float(entry.get("density", 1000.0)),
                collision_file=model_dir / "collision.obj",
                visual_file=visual,
                scale=scale,
                color=_MISSING_VISUAL_COLOR,
            )
        )
    return out


def _read_image(path: Path) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import imageio.v3 as iio

        img = iio.imread(path)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        return img[..., :3]

    return load


def _load_rl4vla(directory: Path) -> AssetLibrary:
    objects = _mesh_assets(directory / "more_carrot")
    receptacles = _mesh_assets(directory / "more_plate")
    table_db = json.loads((directory / "more_table" / "model_db.json").read_text())
    tables = [
        ImageAsset(name=str(table_db.get(p.name, {}).get("name", p.stem)), loader=_read_image(p))
        for p in sorted((directory / "more_table" / "imgs").glob("*.png"))
    ]
    textures = [
        ImageAsset(name=f"texture {p.stem}", loader=_read_image(p))
        for p in sorted((directory / "more_table" / "textures").glob("*.png"))
    ]
    logger.info("vla_torchrl envs: using the RL4VLA asset set from %s", directory)
    return AssetLibrary(
        source="rl4vla",
        objects_train=tuple(objects[:N_OBJECTS_TRAIN]),
        objects_unseen=tuple(objects[N_OBJECTS_TRAIN : N_OBJECTS_TRAIN + N_OBJECTS_UNSEEN]),
        receptacle_train=receptacles[0],
        receptacles_unseen=tuple(receptacles[1 : 1 + N_RECEPTACLES_UNSEEN]),
        tables_train=tuple(tables[:N_TABLES_TRAIN]),
        tables_unseen=tuple(tables[N_TABLES_TRAIN : N_TABLES_TRAIN + N_TABLES_UNSEEN]),
        textures=tuple(textures[:N_TEXTURES]),
    )


# -- procedural ---------------------------------------------------------------------------------
_C: dict[str, Color] = {
    "red": (0.8, 0.1, 0.1, 1.0),
    "green": (0.2, 0.65, 0.2, 1.0),
    "dark green": (0.1, 0.4, 0.15, 1.0),
    "blue": (0.15, 0.3, 0.85, 1.0),
    "yellow": (0.95, 0.85, 0.15, 1.0),
    "orange": (0.95, 0.5, 0.1, 1.0),
    "purple": (0.5, 0.2, 0.6, 1.0),
    "brown": (0.5, 0.3, 0.15, 1.0),
    "white": (0.95, 0.95, 0.95, 1.0),
    "pink": (0.95, 0.55, 0.7, 1.0),
    "black": (0.08, 0.08, 0.08, 1.0),
    "cyan": (0.1, 0.75, 0.8, 1.0),
    "grey": (0.55, 0.55, 0.55, 1.0),
    "teal": (0.0, 0.5, 0.5, 1.0),
    "navy": (0.05, 0.1, 0.4, 1.0),
    "beige": (0.9, 0.8, 0.6, 1.0),
    "silver": (0.75, 0.75, 0.8, 1.0),
    "wood": (0.65, 0.45, 0.25, 1.0),
}


def _P(shape, size, color, offset=(0.0, 0.0, 0.0), upright=False) -> Primitive:  # noqa: N802
    return Primitive(
        shape=shape, size=tuple(size), offset=tuple(offset), upright=upright, color=_C[color]
    )


# name -> parts. Sizes keep every object graspable by a WidowX gripper (<= ~5 cm across).
_PROCEDURAL_OBJECTS: tuple[tuple[str, tuple[Primitive, ...]], ...] = (
    # 16 training objects
    ("red block", (_P("box", (0.02, 0.02, 0.02), "red"),)),
    ("green apple", (_P("sphere", (0.024,), "green"),)),
    ("banana", (_P("capsule", (0.015, 0.04), "yellow"),)),
    ("carrot", (_P("capsule", (0.014, 0.045), "orange"),)),
    ("blue can", (_P("cylinder", (0.02, 0.03), "blue", upright=True),)),
    ("eggplant", (_P("capsule", (0.02, 0.03), "purple"),)),
    ("orange ball", (_P("sphere", (0.022,), "orange"),)),
    ("wooden bar", (_P("box", (0.05, 0.014, 0.014), "wood"),)),
    ("soap bar", (_P("box", (0.035, 0.022, 0.012), "white"),)),
    ("pink eraser", (_P("box", (0.025, 0.015, 0.01), "pink"),)),
    ("cucumber", (_P("capsule", (0.016, 0.05), "dark green"),)),
    ("potato", (_P("capsule", (0.022, 0.015), "brown"),)),
    ("black remote", (_P("box", (0.045, 0.018, 0.01), "black"),)),
    ("cyan cup", (_P("cylinder", (0.024, 0.03), "cyan", upright=True),)),
    ("lemon", (_P("sphere", (0.02,), "yellow"),)),
    ("tomato", (_P("sphere", (0.023,), "red"),)),
    # 9 unseen objects
    (
        "toy hammer",
        (
            _P("box", (0.045, 0.01, 0.01), "wood"),
            _P("box", (0.012, 0.03, 0.014), "grey", offset=(0.05, 0.0, 0.004)),
        ),
    ),
    (
        "red mug",
        (
            _P("cylinder", (0.024, 0.032), "red", upright=True),
            _P("box", (0.006, 0.004, 0.018), "red", offset=(0.03, 0.0, 0.0)),
        ),
    ),
    (
        "red pepper",
        (
            _P("capsule", (0.02, 0.02), "red"),
            _P("cylinder", (0.004, 0.008), "green", offset=(0.047, 0.0, 0.0)),
        ),
    ),
    ("golf ball", (_P("sphere", (0.02,), "white"),)),
    ("yellow sponge", (_P("box", (0.035, 0.025, 0.018), "yellow"),)),
    (
        "grey stapler",
        (
            _P("box", (0.05, 0.015, 0.01), "grey"),
            _P("box", (0.045, 0.012, 0.006), "black", offset=(0.0, 0.0, 0.016)),
        ),
    ),
    (
        "toy car",
        (
            _P("box", (0.04, 0.02, 0.01), "blue"),
            _P("box", (0.02, 0.017, 0.01), "white", offset=(-0.005, 0.0, 0.02)),
        ),
    ),
    (
        "pear",
        (_P("sphere", (0.024,), "green"), _P("sphere", (0.016,), "green", offset=(0.03, 0.0, 0.0))),
    ),
    ("purple dice", (_P("box", (0.018, 0.018, 0.018), "purple"),)),
)

_PROCEDURAL_RECEPTACLES: tuple[tuple[str, tuple[Primitive, ...]], ...] = (
    ("plate", (_P("cylinder", (0.075, 0.006), "yellow", upright=True),)),  # training plate
    ("blue tray", (_P("box", (0.085, 0.065, 0.008), "blue"),)),
    ("green coaster", (_P("cylinder", (0.06, 0.005), "green", upright=True),)),
    ("red cutting board", (_P("box", (0.09, 0.065, 0.008), "red"),)),
    ("wooden board", (_P("box", (0.08, 0.08, 0.01), "wood"),)),
    ("black pan", (_P("cylinder", (0.075, 0.009), "black", upright=True),)),
    ("white saucer", (_P("cylinder", (0.065, 0.005), "white", upright=True),)),
    ("pink napkin", (_P("box", (0.07, 0.07, 0.003), "pink"),)),
    ("orange mat", (_P("box", (0.09, 0.06, 0.004), "orange"),)),
    ("baking sheet", (_P("box", (0.095, 0.07, 0.005), "silver"),)),
    ("purple placemat", (_P("box", (0.085, 0.06, 0.003), "purple"),)),
    ("doormat", (_P("box", (0.09, 0.065, 0.006), "brown"),)),
    ("teal dish", (_P("cylinder", (0.07, 0.008), "teal", upright=True),)),
    ("pot lid", (_P("cylinder", (0.068, 0.006), "grey", upright=True),)),
    ("yellow notebook", (_P("box", (0.075, 0.055, 0.006), "yellow"),)),
    ("beige book", (_P("box", (0.08, 0.06, 0.012), "beige"),)),
    ("navy towel", (_P("box", (0.09, 0.07, 0.004), "navy"),)),
)

_TABLE_NAMES = (
    "oak table",
    "white table",
    "walnut desk",
    "grey table",
    "pine table",
    "blue table",
    "marble table",
    "green desk",
    "beige table",
    "checkered table",
    "red desk",
    "tiled table",
    "dark wood table",
    "cream desk",
    "cherry table",
    "slate table",
    "pink table",
    "stone table",
    "yellow desk",
    "glass table",
    "striped table",
)
_PATTERNS = ("wood", "plain", "speckle", "checker", "stripes", "tiles", "marble", "waves")


def _bbox_of(parts: Sequence[Primitive]) -> tuple[np.ndarray, np.ndarray]:
    lo = np.min([np.asarray(p.offset) - p.half_extents() for p in parts], axis=0)
    hi = np.max([np.asarray(p.offset) + p.half_extents() for p in parts], axis=0)
    return lo, hi


def _procedural_asset(prefix: str, index: int, name: str, parts, density: float) -> SceneAsset:
    lo, hi = _bbox_of(parts)
    return SceneAsset(
        uid=f"{prefix}{index:03d}_{name.replace(' ', '_')}",
        name=name,
        bbox_min=tuple(float(v) for v in lo),  # type: ignore[arg-type]
        bbox_max=tuple(float(v) for v in hi),  # type: ignore[arg-type]
        density=density,
        parts=tuple(parts),
        color=parts[0].color,
    )


def pattern_image(
    pattern: str, base: np.ndarray, accent: np.ndarray, rng: np.random.Generator, h: int, w: int
) -> np.ndarray:
    """A uint8 ``h x w x 3`` image of ``pattern`` mixing two RGB colours (values in [0, 255]).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> img = pattern_image("checker", np.zeros(3), np.full(3, 255.0), rng, 8, 8)
        >>> img.shape, img.dtype, int(img.min()), int(img.max()) > 200
        ((8, 8, 3), dtype('uint8'), 0, True)
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    freq = rng.uniform(0.5, 2.0)
    angle = rng.uniform(0, math.pi)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) / max(h, w)
    if pattern == "plain":
        t = np.zeros((h, w), np.float32)
    elif pattern == "wood":
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (40 * freq * u + 3 * np.sin(6 * math.pi * yy / h)))
    elif pattern == "speckle":
        t = (rng.random((h, w)) < 0.15).astype(np.float32)
    elif pattern == "checker":
        n = int(4 + 8 * freq)
        t = ((np.floor(xx * n / w) + np.floor(yy * n / w)) % 2).astype(np.float32)
    elif pattern == "stripes":
        t = (np.sin(2 * math.pi * 12 * freq * u) > 0).astype(np.float32)
    elif pattern == "tiles":
        n = int(6 + 6 * freq)
        t = ((xx % (w / n) < 2) | (yy % (w / n) < 2)).astype(np.float32)
    elif pattern == "marble":
        t = 0.5 + 0.5 * np.sin(
            2
            * math.pi
            * (6 * freq * u + 2 * rng.random() * np.sin(2 * math.pi * (xx + yy) / (0.7 * w)))
        )
        t = t**3
    elif pattern == "waves":
        t = 0.5 + 0.5 * np.sin(2 * math.pi * 8 * freq * u) * np.cos(2 * math.pi * 5 * yy / h)
    else:
        raise ValueError(f"unknown pattern {pattern!r}; use one of {_PATTERNS}")
    img = base[None, None] * (1 - t[..., None]) + accent[None, None] * t[..., None]
    img = img + rng.normal(0, 6, size=img.shape)  # sensor-like grain
    return np.clip(img, 0, 255).astype(np.uint8)


def _table_loader(seed: int, index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        rng = np.random.default_rng([seed, 1, index])
        h, w = 480, 640
        base = rng.uniform(40, 230, size=3)
        accent = np.clip(base + rng.uniform(-70, 70, size=3), 0, 255)
        img = pattern_image(_PATTERNS[index % len(_PATTERNS)], base, accent, rng, h, w)
        # a wall band at the top of the frame, like the photographs' background
        horizon = int(h * rng.uniform(0.08, 0.18))
        wall = np.clip(rng.uniform(120, 240, size=3), 0, 255)
        img[:horizon] = np.clip(wall + rng.normal(0, 4, (horizon, w, 3)), 0, 255).astype(np.uint8)
        return img

    return load


def _texture_loader(seed: int, index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        rng = np.random.default_rng([seed, 2, index])
        base = rng.uniform(0, 255, size=3)
        accent = rng.uniform(0, 255, size=3)
        pattern = _PATTERNS[1:][index % (len(_PATTERNS) - 1)]
        return pattern_image(pattern, base, accent, rng, 256, 256)

    return load


@cache
def _procedural_library(seed: int) -> AssetLibrary:
    objects = [
        _procedural_asset("obj", i, name, parts, density=600.0)
        for i, (name, parts) in enumerate(_PROCEDURAL_OBJECTS)
    ]
    receptacles = [
        _procedural_asset("rec", i, name, parts, density=800.0)
        for i, (name, parts) in enumerate(_PROCEDURAL_RECEPTACLES)
    ]
    tables = [ImageAsset(name=n, loader=_table_loader(seed, i)) for i, n in enumerate(_TABLE_NAMES)]
    textures = [
        ImageAsset(name=f"texture {i:02d}", loader=_texture_loader(seed, i))
        for i in range(N_TEXTURES)
    ]
    return AssetLibrary(
        source="procedural",
        objects_train=tuple(objects[:N_OBJECTS_TRAIN]),
        objects_unseen=tuple(objects[N_OBJECTS_TRAIN:]),
        receptacle_train=receptacles[0],
        receptacles_unseen=tuple(receptacles[1:]),
        tables_train=tuple(tables[:N_TABLES_TRAIN]),
        tables_unseen=tuple(tables[N_TABLES_TRAIN:]),
        textures=tuple(textures),
    )
