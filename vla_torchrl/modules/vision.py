"""Fused DINOv2 + SigLIP patch featurizer on timm (OpenVLA's ``vision_backbone``).

Both towers are timm ``VisionTransformer`` s built with ``pretrained=False`` (nothing is
downloaded). OpenVLA reads the output of the second-to-last block, drops the prefix tokens
(DINO: class + 4 registers; SigLIP: none) and applies no final norm; the two patch grids are
concatenated along the feature axis (256 x 2176 at 224 px). The heads timm builds (final norm,
SigLIP's attention pool) are kept as parameters, unused, because the checkpoint stores them.

timm's ``LayerScale.gamma`` is stored as ``scale_factor`` in the checkpoint, so the LayerScale
modules are swapped for :class:`ScaleFactorLayerScale` (same maths, checkpoint's name).

A tower with ``ViTConfig.stem="conv"`` has its patchify convolution replaced by a
:class:`ConvStem` (random-init towers only; the checkpoint's towers patchify).
"""

from __future__ import annotations

import math

import timm
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vla_torchrl.modules.config import OpenVLAConfig, ViTConfig, stem_strides

__all__ = ["ConvStem", "FusedFeaturizer", "ScaleFactorLayerScale", "build_tower"]


class ScaleFactorLayerScale(nn.Module):
    """``x * scale_factor`` (timm's LayerScale, with the checkpoint's parameter name)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.ones(dim))

    @classmethod
    def from_gamma(cls, gamma: torch.Tensor) -> ScaleFactorLayerScale:
        """The layer holding (a copy of) timm's ``gamma``: same values, dtype and device; no
        ``.to`` / ``copy_``, so it also works on ``meta`` and under ``FakeTensorMode``."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.scale_factor = nn.Parameter(gamma.detach().clone(), requires_grad=gamma.requires_grad)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class ConvStem(nn.Module):
    """Early convolutions in place of a ViT's patchify layer (Xiao et al., 2021, "Early
    Convolutions Help Transformers See Better"): one block of convolution + GroupNorm + GELU per
    factor of ``patch_size`` (:func:`~vla_torchrl.modules.config.stem_strides`: stride 2 with
    kernel 3, then stride 3 with kernel 5), widths doubling up to ``embed_dim``, then a 1x1
    projection. A power-of-2 patch gives ``log2(patch_size)`` 3x3 stride-2 blocks; patch 12
    (96 px into the same 8 x 8 grid as 64 px at patch 8) gives two of those and one 5x5
    stride-3 block.

    Same input and output as timm's ``PatchEmbed.proj``: ``[B, C, S, S]`` ->
    ``[B, embed_dim, S / p, S / p]``, so the token grid, the positional embeddings and the blocks
    are those of the patchify tower. The overlapping 3x3 windows see across patch borders and
    give a random-init tower a locality prior; where a point lies inside its patch survives
    into the token (issue 14 measures what that buys for localisation).

    Examples:
        >>> stem = ConvStem(3, 96, patch_size=8)
        >>> stem(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 96, 8, 8])
        >>> [m.out_channels for m in stem.modules() if isinstance(m, nn.Conv2d)]
        [24, 48, 96, 96]
        >>> ConvStem(3, 96, patch_size=12)(torch.zeros(1, 3, 96, 96)).shape
        torch.Size([1, 96, 8, 8])
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        strides = stem_strides(patch_size)
        n = len(strides)
        layers: list[nn.Module] = []
        c = in_chans
        for i, stride in enumerate(strides):
            width = max(8, embed_dim // 2 ** (n - 1 - i))
            # kernel 2s - 1, padding 1: windows overlap, and S -> S / s when s divides S
            layers += [
                nn.Conv2d(c, width, 2 * stride - 1, stride=stride, padding=1, bias=False),
                nn.GroupNorm(math.gcd(8, width), width),
                nn.GELU(),
            ]
            c = width
        layers.append(nn.Conv2d(c, embed_dim, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build_tower(spec: ViTConfig, image_size: int) -> nn.Module:
    """A timm ViT with ``spec``'s sizes, random weights, LayerScale renamed to ``scale_factor``,
    and a :class:`ConvStem` when ``spec.stem == "conv"``."""
    model = timm.create_model(spec.timm_name, pretrained=False, **spec.timm_kwargs(image_size))
    if spec.stem == "conv":
        proj = model.patch_embed.proj
        model.patch_embed.proj = ConvStem(proj.in_channels, proj.out_channels, spec.patch_size)
    for block in model.blocks:
        for name in ("ls1", "ls2"):
            layer = getattr(block, name)
            if hasattr(layer, "gamma"):
                setattr(block, name, ScaleFactorLayerScale.from_gamma(layer.gamma))
    return model


def _penultimate_patches(vit: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Patch tokens after the second-to-last block, no final norm, prefix tokens dropped.

    With ``vit.set_grad_checkpointing(True)``, in training mode and with gradients enabled (as
    timm's own ``forward_features`` and transformers decide), each block is checkpointed
    (non-reentrant): its activations are recomputed in the backward instead of being kept.
    """
    x = vit.patch_embed(pixels)
    x = vit._pos_embed(x)
    x = vit.patch_drop(x)
    x = vit.norm_pre(x)
    checkpointed = getattr(vit, "grad_checkpointing", False) and vit.training
    checkpointed = checkpointed and torch.is_grad_enabled()
    for block in vit.blocks[:-1]:
        x = checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
    return x[:, vit.num_prefix_tokens :]


class FusedFeaturizer(nn.Module):
    """``featurizer`` (DINOv2, channels 0-2) + ``fused_featurizer`` (SigLIP, channels 3-5).

    Args:
        config: the model configuration (tower sizes and image size).

    Examples:
        >>> cfg = OpenVLAConfig.tiny()
        >>> f = FusedFeaturizer(cfg)
        >>> f(torch.zeros(2, 6, cfg.image_size, cfg.image_size)).shape
        torch.Size([2, 16, 64])
    """

    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__()
        self.featurizer = build_tower(config.dino, config.image_size)
        self.fused_featurizer = build_tower(config.siglip, config.image_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 6, S, S]`` -> fused patch features ``[B, P, D_dino + D_siglip]``."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 6:
            raise ValueError(
                f"FusedFeaturizer expects [B, 6, S, S] pixels (DINO then SigLIP channels), got "
                f"{tuple(pixel_values.shape)}; use OpenVLAImageProcessor to build them."
            )
        dino, siglip = pixel_values.split(3, dim=1)
        return torch.cat(
            [
                _penultimate_patches(self.featurizer, dino),
                _penultimate_patches(self.fused_featurizer, siglip),
            ],
            dim=-1,
        )
