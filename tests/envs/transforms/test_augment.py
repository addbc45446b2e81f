"""ImageAugmentation: each output is a replicate-padded shift of its input (plain-loop check)."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.envs.transforms import ImageAugmentation
from vla_torchrl.keys import IMAGE_KEY


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = img[clip(i + dy), clip(j + dx)], written as a plain loop."""
    h, w, _ = img.shape
    out = torch.empty_like(img)
    for i in range(h):
        for j in range(w):
            out[i, j] = img[min(max(i + dy, 0), h - 1), min(max(j + dx, 0), w - 1)]
    return out


def test_shift_is_a_replicate_padded_crop_within_the_bound_and_varies():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 9, 7, 3), dtype=torch.uint8, generator=g)
    aug = ImageAugmentation(shift=2, brightness=0.0, contrast=0.0, seed=1)
    out = aug(TensorDict({IMAGE_KEY: images.clone()}, [12]))[IMAGE_KEY]
    offsets = []
    for img, res in zip(images, out, strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(_shifted(img, dy, dx), res)
        ]
        assert found, "output is not a shift of at most 2 px of its input"
        offsets.append(found[0])
    assert len(set(offsets)) > 3  # independent offsets per image


def test_photometric_jitter_stays_in_bounds_and_keeps_batch_dims():
    images = torch.full((2, 3, 5, 5, 3), 128, dtype=torch.uint8)
    aug = ImageAugmentation(shift=0, brightness=0.2, contrast=0.0, seed=0)
    out = aug(TensorDict({IMAGE_KEY: images}, [2, 3]))[IMAGE_KEY]
    assert out.shape == images.shape and out.dtype == torch.uint8
    factors = out.float().mean(dim=(-3, -2, -1)) / 128.0  # one brightness factor per image
    assert ((factors >= 0.8 - 1e-2) & (factors <= 1.2 + 1e-2)).all()
    assert factors.unique().numel() > 1


def test_bad_images_and_options_are_rejected():
    with pytest.raises(ValueError, match="must be >= 0"):
        ImageAugmentation(shift=-1)
    aug = ImageAugmentation()
    with pytest.raises(ValueError, match=r"should be HWC uint8 \[\*B, H, W, 3\]"):
        aug(TensorDict({IMAGE_KEY: torch.zeros(2, 3, 8, 8)}, [2]))
