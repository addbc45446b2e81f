"""OpenVLA configuration: vision towers, projector, language model, token layout, norm stats.

Two presets share one structure and one vocabulary layout, so that everything downstream of the
model (prompt ids, action ids, tokenizers, losses) is identical for both:

- :meth:`OpenVLAConfig.openvla_7b`: the ``openvla/openvla-7b`` checkpoint (FACTS.md): DINOv2
  ViT-L/14 with 4 registers + SigLIP so400m/14 at 224 px, projector 2176 -> 8704 -> 4096 -> 4096,
  Llama-2 7B with vocabulary 32064 (32000 + 64 pad rows), 7,541,237,184 parameters.
- :meth:`OpenVLAConfig.tiny`: same timm architectures and Llama class with tiny widths/depths
  at 28 px, for CPU tests and learning demos.

Vocabulary layout (both presets): ``BOS = 1``, ``<PAD> = 32000``, action ids ``31744..31999``
(the last 256 ids of the 32000-token Llama-2 vocabulary), 7 action tokens per step, and
token ``29871`` closing every prompt.

Examples:
    >>> cfg = OpenVLAConfig.tiny()
    >>> cfg.action_token_ids
    (31744, 32000)
    >>> cfg.num_patches, cfg.vision_dim
    (16, 64)
    >>> OpenVLAConfig.tiny(llm_hidden_size=30)
    Traceback (most recent call last):
    ...
    ValueError: OpenVLAConfig.llm_hidden_size=30 is not divisible by llm_num_heads=4; choose a hidden size that is a multiple of the number of heads.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OpenVLAConfig", "ViTConfig", "stem_strides"]

DINO_TIMM_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_TIMM_ID = "vit_so400m_patch14_siglip_224"
_SIGLIP_MLP_RATIO = 3.7362  # timm's so400m setting (4304 / 1152)


@dataclass
class ViTConfig:
    """One timm vision tower (built with ``pretrained=False`` and these overrides).

    Attributes:
        timm_name: the timm model id whose architecture is used (DINO: 4 register tokens,
            LayerScale; SigLIP: no class token, attention-pool head).
        embed_dim, depth, num_heads, patch_size, mlp_ratio: the usual ViT sizes.
        layer_scale_init: initial LayerScale value of a DINO tower (``None``: timm's value for
            DINOv2, 1e-5). A checkpoint overwrites it; it only matters for towers trained from
            random weights, where 1e-5 keeps every block's residual branch ~silent: in a
            measured small-model SFT (issue 14) the DINO gammas had only grown to ~3e-3 after
            1,288 steps, so that tower was nearly a bare patch embedding. SigLIP has no
            LayerScale, so the option is refused there.
        stem: how pixels become patch tokens. ``"patch"`` (default, the checkpoint's): one
            ``patch_size`` x ``patch_size`` convolution of stride ``patch_size``. ``"conv"``:
            a stack of 3x3 stride-2 convolutions down to the same grid, then a 1x1 projection
            (:class:`~vla_torchrl.modules.vision.ConvStem`, "early convolutions", Xiao et al.
            2021), for towers trained from random weights on little data; needs a patch size
            made of 2s and 3s (8, 12, 16, ...). The tokens, the grid and everything after the
            stem are unchanged.
    """

    timm_name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    mlp_ratio: float
    layer_scale_init: float | None = None
    stem: str = "patch"

    def __post_init__(self) -> None:
        if self.timm_name not in (DINO_TIMM_ID, SIGLIP_TIMM_ID):
            raise ValueError(
                f"ViTConfig.timm_name={self.timm_name!r} is not supported; OpenVLA fuses "
                f"{DINO_TIMM_ID!r} and {SIGLIP_TIMM_ID!r}."
            )
        for name in ("embed_dim", "depth", "num_heads", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ViTConfig.{name}={getattr(self, name)} must be >= 1.")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"ViTConfig.embed_dim={self.embed_dim} is not divisible by num_heads="
                f"{self.num_heads}."
            )
        if self.depth < 2:
            raise ValueError(
                f"ViTConfig.depth={self.depth}: OpenVLA reads the second-to-last block, so a "
                "tower needs at least 2 blocks."
            )
        if self.layer_scale_init is not None:
            if self.timm_name != DINO_TIMM_ID:
                raise ValueError(
                    f"ViTConfig.layer_scale_init={self.layer_scale_init} on {self.timm_name!r}: "
                    "only the DINO tower has LayerScale; leave it None for SigLIP."
                )
            if not 0.0 < self.layer_scale_init <= 10.0:
                raise ValueError(
                    f"ViTConfig.layer_scale_init={self.layer_scale_init} must be in (0, 10] "
                    "(1.0 for a tower trained from scratch, None for timm's 1e-5)."
                )
        if self.stem not in ("patch", "conv"):
            raise ValueError(
                f"ViTConfig.stem={self.stem!r}; use 'patch' (one patchify convolution, the "
                "checkpoint's) or 'conv' (3x3 stride-2 convolutions, for random-init towers)."
            )
        if self.stem == "conv" and not _stem_fits(self.patch_size):
            raise ValueError(
                f"ViTConfig.stem='conv' with patch_size={self.patch_size}: the conv stem divides "
                "the resolution by 2 or 3 per layer, so the patch size must be a product of 2s "
                "and 3s (e.g. 8 at 64 px, 12 at 96 px)."
            )

    def timm_kwargs(self, image_size: int) -> dict[str, Any]:
        """Keyword overrides passed to ``timm.create_model``."""
        return {
            "img_size": image_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "patch_size": self.patch_size,
            "mlp_ratio": self.mlp_ratio,
            "num_classes": 0,
            **({} if self.layer_scale_init is None else {"init_values": self.layer_scale_init}),
        }


def stem_strides(patch_size: int) -> list[int]:
    """The strides of :class:`ConvStem`'s blocks: ``patch_size`` as a product of 2s, then 3s.

    Examples:
        >>> stem_strides(8), stem_strides(12), stem_strides(1)
        ([2, 2, 2], [2, 2, 3], [])
        >>> stem_strides(14)
        Traceback (most recent call last):
        ...
        ValueError: ConvStem: patch_size=14 is not a product of 2s and 3s (e.g. 8, 12, 16)
    """
    strides, rest = [], max(patch_size, 0)
    for factor in (2, 3):
        while rest and rest % factor == 0:
            strides.append(factor)
            rest //= factor
    if rest != 1 or patch_size < 1:
        raise ValueError(
            f"ConvStem: patch_size={patch_size} is not a product of 2s and 3s (e.g. 8, 12, 16)"
        )
    return strides


def _stem_fits(patch_size: int) -> bool:
    """Whether :func:`stem_strides` accepts ``patch_size``."""
    try:
        stem_strides(patch_size)
    except ValueError:
        return False
    return True


def _merge_towers(preset: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with a partial ``dino`` / ``siglip`` mapping applied to the preset's tower
    (``{"dino": {"stem": "conv"}}`` changes that one field); a ``ViTConfig`` replaces it whole."""
    out = dict(overrides)
    for tower in ("dino", "siglip"):
        given = out.get(tower)
        if given is not None and not isinstance(given, ViTConfig):
            out[tower] = dataclasses.replace(preset[tower], **dict(given))
    return out


@dataclass
class OpenVLAConfig:
    """Validated OpenVLA configuration (build presets with :meth:`openvla_7b` / :meth:`tiny`).

    Attributes:
        image_size: square input size ``S`` of both towers (224 for the checkpoint).
        dino, siglip: the two vision towers.
        llm_*: Llama sizes (``transformers.LlamaConfig`` fields).
        vocab_size: 32064 (32000 Llama-2 ids + 64 pad rows).
        base_vocab_size: 32000; action ids are the last ``n_action_bins`` ids below it.
        n_action_bins: 256. ``action_dim``: 7 tokens per action.
        bos_token_id, pad_token_id, prompt_end_token_id: 1, 32000, 29871.
        norm_stats: per-dataset statistics ``{name: {"action": {"q01", "q99", "mask", ...}}}``.
    """

    image_size: int = 224
    dino: ViTConfig = field(default_factory=lambda: ViTConfig(DINO_TIMM_ID, 1024, 24, 16, 14, 4.0))
    siglip: ViTConfig = field(
        default_factory=lambda: ViTConfig(SIGLIP_TIMM_ID, 1152, 27, 16, 14, _SIGLIP_MLP_RATIO)
    )
    llm_hidden_size: int = 4096
    llm_intermediate_size: int = 11008
    llm_num_layers: int = 32
    llm_num_heads: int = 32
    llm_num_kv_heads: int = 32
    llm_max_position_embeddings: int = 2048
    llm_rms_norm_eps: float = 1e-6
    llm_rope_theta: float = 10000.0
    vocab_size: int = 32064
    base_vocab_size: int = 32000
    n_action_bins: int = 256
    action_dim: int = 7
    bos_token_id: int = 1
    pad_token_id: int = 32000
    prompt_end_token_id: int = 29871
    norm_stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.dino, dict):
            self.dino = ViTConfig(**self.dino)
        if isinstance(self.siglip, dict):
            self.siglip = ViTConfig(**self.siglip)
        if self.dino.timm_name != DINO_TIMM_ID or self.siglip.timm_name != SIGLIP_TIMM_ID:
            raise ValueError(
                f"OpenVLAConfig: dino must use {DINO_TIMM_ID!r} and siglip {SIGLIP_TIMM_ID!r} "
                f"(got {self.dino.timm_name!r}, {self.siglip.timm_name!r})."
            )
        for tower in (self.dino, self.siglip):
            if self.image_size % tower.patch_size:
                raise ValueError(
                    f"OpenVLAConfig.image_size={self.image_size} is not a multiple of the "
                    f"{tower.timm_name} patch size {tower.patch_size}."
                )
        if self.image_size // self.dino.patch_size != self.image_size // self.siglip.patch_size:
            raise ValueError(
                "OpenVLAConfig: DINO and SigLIP must yield the same number of patches (their "
                "features are concatenated per patch); use equal patch sizes."
            )
        if self.llm_hidden_size % self.llm_num_heads:
            raise ValueError(
                f"OpenVLAConfig.llm_hidden_size={self.llm_hidden_size} is not divisible by "
                f"llm_num_heads={self.llm_num_heads}; choose a hidden size that is a multiple of "
                "the number of heads."
            )
        if self.llm_num_heads % self.llm_num_kv_heads:
            raise ValueError(
                f"OpenVLAConfig.llm_num_heads={self.llm_num_heads} is not a multiple of "
                f"llm_num_kv_heads={self.llm_num_kv_heads}."
            )
        if not (self.n_action_bins <= self.base_vocab_size <= self.vocab_size):
            raise ValueError(
                f"OpenVLAConfig: need n_action_bins ({self.n_action_bins}) <= base_vocab_size "
                f"({self.base_vocab_size}) <= vocab_size ({self.vocab_size})."
            )
        if not (0 <= self.pad_token_id < self.vocab_size):
            raise ValueError(
                f"OpenVLAConfig.pad_token_id={self.pad_token_id} lies outside the vocabulary "
                f"of size {self.vocab_size}."
            )
        if self.action_dim < 1:
            raise ValueError(f"OpenVLAConfig.action_dim={self.action_dim} must be >= 1.")
        for name, stats in self.norm_stats.items():
            action = stats.get("action") if isinstance(stats, dict) else None
            if not isinstance(action, dict) or not {"q01", "q99"} <= set(action):
                raise ValueError(
                    f"OpenVLAConfig.norm_stats[{name!r}] has no 'action' entry with 'q01' and "
                    "'q99'; pass the checkpoint's norm_stats unchanged."
                )

    # -- derived -------------------------------------------------------------------------
    @property
    def num_patches(self) -> int:
        """Patch tokens inserted after BOS (256 at 224 px with patch 14)."""
        return (self.image_size // self.dino.patch_size) ** 2

    @property
    def vision_dim(self) -> int:
        """Width of the fused patch features (1024 + 1152 = 2176 for the checkpoint)."""
        return self.dino.embed_dim + self.siglip.embed_dim

    @property
    def action_token_ids(self) -> tuple[int, int]:
        """``(first, end)`` of the action id range: ``[base_vocab - n_bins, base_vocab)``."""
        return self.base_vocab_size - self.n_action_bins, self.base_vocab_size

    # -- presets -------------------------------------------------------------------------
    @classmethod
    def openvla_7b(cls, **overrides: Any) -> OpenVLAConfig:
        """The ``openvla/openvla-7b`` layout (7,541,237,184 parameters)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> OpenVLAConfig:
        """Same structure and vocabulary layout as the 7B model, tiny widths (CPU tests)."""
        values: dict[str, Any] = {
            "image_size": 28,
            "dino": ViTConfig(DINO_TIMM_ID, 32, 2, 2, 7, 2.0),
            "siglip": ViTConfig(SIGLIP_TIMM_ID, 32, 2, 2, 7, 2.0),
            "llm_hidden_size": 64,
            "llm_intermediate_size": 128,
            "llm_num_layers": 2,
            "llm_num_heads": 4,
            "llm_num_kv_heads": 4,
            "llm_max_position_embeddings": 256,
        }
        values.update(_merge_towers(values, overrides))
        return cls(**values)

    @classmethod
    def small(cls, **overrides: Any) -> OpenVLAConfig:
        """The CPU scale of the real benchmark: 64 px, patch 8 (64 patches), 10.7M parameters.

        Same structure and vocabulary as the 7B model; sized so that SFT and PPO on ManiSkill
        run on 2 CPU cores (~40 SFT samples/s): ViTs 96 wide x 4 blocks, Llama 128 x 4 layers.
        At 64 px a 640x480 view leaves the object ~6 px wide; patch 8 keeps it within one or
        two patches (patch 14 at 56 px gave 16 coarse patches and never grasped, issue 14).
        The towers start from random weights, so they take a conv stem (``ViTConfig.stem``):
        pretrained on simulator frames, it localised the gripper and the object after 3,000
        steps as well as the patchify towers did after 11,000 (issue 14, ninth session).
        ``small(dino={"stem": "patch"}, siglip={"stem": "patch"})`` gives the patchify towers.

        Examples:
            >>> cfg = OpenVLAConfig.small()
            >>> cfg.image_size, cfg.num_patches, cfg.vision_dim, cfg.dino.stem
            (64, 64, 192, 'conv')
        """
        values: dict[str, Any] = {
            "image_size": 64,
            # trained from scratch: LayerScale starts at 1, not DINOv2's 1e-5 (ViTConfig), and
            # early convolutions instead of the patchify layer
            "dino": ViTConfig(DINO_TIMM_ID, 96, 4, 4, 8, 4.0, layer_scale_init=1.0, stem="conv"),
            "siglip": ViTConfig(SIGLIP_TIMM_ID, 96, 4, 4, 8, 4.0, stem="conv"),
            "llm_hidden_size": 128,
            "llm_intermediate_size": 512,
            "llm_num_layers": 4,
            "llm_num_heads": 4,
            "llm_num_kv_heads": 4,
            "llm_max_position_embeddings": 512,
        }
        values.update(_merge_towers(values, overrides))
        return cls(**values)

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every field."""
        return dataclasses.asdict(self)

    def to_hf_dict(self) -> dict[str, Any]:
        """A ``config.json`` in the checkpoint's format, plus the exact fields under ``vla_torchrl``."""
        own = self.to_dict()
        norm_stats = own.pop("norm_stats")
        return {
            "architectures": ["OpenVLAForActionPrediction"],
            "model_type": "openvla",
            "vision_backbone_id": "dinosiglip-vit-so-224px",
            "llm_backbone_id": "llama2-7b-pure",
            "arch_specifier": "no-align+fused-gelu-mlp",
            "use_fused_vision_backbone": True,
            "image_resize_strategy": "resize-naive",
            "timm_model_ids": [DINO_TIMM_ID, SIGLIP_TIMM_ID],
            "image_sizes": [self.image_size, self.image_size],
            "n_action_bins": self.n_action_bins,
            "pad_token_id": self.pad_token_id,
            "pad_to_multiple_of": self.vocab_size - self.base_vocab_size,
            "text_config": {
                "model_type": "llama",
                "vocab_size": self.vocab_size,
                "hidden_size": self.llm_hidden_size,
                "intermediate_size": self.llm_intermediate_size,
                "num_hidden_layers": self.llm_num_layers,
                "num_attention_heads": self.llm_num_heads,
                "num_key_value_heads": self.llm_num_kv_heads,
                "max_position_embeddings": self.llm_max_position_embeddings,
                "rms_norm_eps": self.llm_rms_norm_eps,
                "rope_theta": self.llm_rope_theta,
                "pad_token_id": self.pad_token_id,
                "tie_word_embeddings": False,
            },
            "norm_stats": norm_stats,
            "vla_torchrl": own,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenVLAConfig:
        """Read a checkpoint ``config.json`` dict (ours, or the original ``openvla-7b`` one)."""
        norm_stats = data.get("norm_stats") or {}
        if "vla_torchrl" in data:
            return cls(**data["vla_torchrl"], norm_stats=norm_stats)
        timm_ids = data.get("timm_model_ids")
        if timm_ids is not None and list(timm_ids) != [DINO_TIMM_ID, SIGLIP_TIMM_ID]:
            raise ValueError(
                f"config.json timm_model_ids={timm_ids} is not the fused DINOv2+SigLIP backbone "
                f"this implementation supports ([{DINO_TIMM_ID!r}, {SIGLIP_TIMM_ID!r}])."
            )
        if data.get("use_fused_vision_backbone") is False:
            raise ValueError("config.json: use_fused_vision_backbone=false is not supported.")
        text = data.get("text_config") or {}
        overrides: dict[str, Any] = {"norm_stats": norm_stats}
        sizes = data.get("image_sizes")
        if sizes:
            overrides["image_size"] = int(sizes[0])
        mapping = {
            "vocab_size": "vocab_size",
            "hidden_size": "llm_hidden_size",
            "intermediate_size": "llm_intermediate_size",
            "num_hidden_layers": "llm_num_layers",
            "num_attention_heads": "llm_num_heads",
            "num_key_value_heads": "llm_num_kv_heads",
            "max_position_embeddings": "llm_max_position_embeddings",
            "rms_norm_eps": "llm_rms_norm_eps",
            "rope_theta": "llm_rope_theta",
        }
        for src, dst in mapping.items():
            if text.get(src) is not None:
                overrides[dst] = text[src]
        if "n_action_bins" in data:
            overrides["n_action_bins"] = int(data["n_action_bins"])
        if data.get("pad_token_id") is not None:
            overrides["pad_token_id"] = int(data["pad_token_id"])
        if "vocab_size" not in overrides and data.get("pad_to_multiple_of"):
            overrides["vocab_size"] = 32000 + int(data["pad_to_multiple_of"])
        return cls.openvla_7b(**overrides)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> OpenVLAConfig:
        """Load from a ``config.json`` file or a checkpoint directory holding one.

        ``norm_stats`` come from ``config.json``, else from ``dataset_statistics.json`` beside it.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"No OpenVLA config at {path}; point to a checkpoint directory with config.json."
            )
        with path.open() as fh:
            data = json.load(fh)
        stats_file = path.parent / "dataset_statistics.json"
        if not data.get("norm_stats") and stats_file.is_file():
            # older exports keep the statistics beside config.json
            with stats_file.open() as fh:
                data["norm_stats"] = json.load(fh)
        return cls.from_dict(data)
