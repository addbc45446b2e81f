"""Image preprocessing: uint8 RGB frames -> OpenVLA's 6-channel pixel input.

OpenVLA (``image_resize_strategy = "resize-naive"``) resizes the frame straight to ``S x S``
with bicubic interpolation, then normalises it twice: channels 0-2 with the ImageNet mean/std
(DINOv2) and channels 3-5 with mean/std 0.5 (SigLIP).

Why not :class:`torchrl.data.vla.OpenVLAImagePreprocessor`: it resizes with Lanczos3 after a
JPEG round-trip (the LIBERO evaluation path) and normalises one 3-channel copy, which is not the
bicubic-resize + fused 6-channel input of the OpenVLA checkpoint; so this module is our own.
The resize runs on the input's device with antialiasing (as PIL's bicubic does) and rounds to
uint8 levels, like the reference that resizes a PIL image before ``ToTensor``.

Examples:
    >>> import torch
    >>> proc = OpenVLAImageProcessor(image_size=28)
    >>> frames = torch.full((2, 64, 48, 3), 255, dtype=torch.uint8)
    >>> px = proc(frames)
    >>> px.shape, px.dtype
    (torch.Size([2, 6, 28, 28]), torch.float32)
    >>> [round(v, 4) for v in px[0, :, 0, 0].tolist()]
    [2.2489, 2.4286, 2.64, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "OpenVLAImageProcessor"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass
class OpenVLAImageProcessor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 6, S, S]`` (DINO channels, then SigLIP).

    Args:
        image_size: the model's input size ``S`` (``config.image_size``).
        dtype: output dtype (the model's compute dtype).
    """

    image_size: int = 224
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"OpenVLAImageProcessor.image_size={self.image_size} must be >= 1.")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim < 4 or images.shape[-1] != 3:
            raise ValueError(
                f"OpenVLAImageProcessor expects uint8 RGB frames [..., H, W, 3], got shape "
                f"{tuple(images.shape)}."
            )
        if images.dtype != torch.uint8:
            raise ValueError(
                f"OpenVLAImageProcessor expects uint8 frames (0..255), got {images.dtype}; "
                "convert with (x * 255).round().to(torch.uint8) if yours are floats in [0, 1]."
            )
        lead = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2).float()
        size = (self.image_size, self.image_size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
            x = x.round().clamp(0, 255)
        x = x / 255.0
        dev = x.device
        mean = torch.tensor(IMAGENET_MEAN + SIGLIP_MEAN, device=dev).view(1, 6, 1, 1)
        std = torch.tensor(IMAGENET_STD + SIGLIP_STD, device=dev).view(1, 6, 1, 1)
        x = (torch.cat([x, x], dim=1) - mean) / std
        return x.to(self.dtype).reshape(*lead, 6, *size)
