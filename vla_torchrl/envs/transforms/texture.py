"""Dynamic Texture / Dynamic Noise: a texture, re-cropped every step, blended over the image.

Paper, Appendix A.4: "a texture from the 16 textures is chosen at the start of each episode.
This texture is cropped and resized differently at each step in the episode, and is overlaid
on top of the object, receptacle, and robot arm in the image [Dynamic Texture] / on whole image
[Dynamic Noise], with an image mixing transparency of 0.3 [weak] / 0.5 [strong]".

TorchRL has no such transform (its image transforms are deterministic per call and know nothing
of episodes), hence this one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Composite
from torchrl.envs.transforms import Transform

from vla_torchrl.envs.transforms._common import (
    check_hwc_image,
    draw_per_episode,
    not_for_stored_data,
    reset_mask,
)
from vla_torchrl.keys import FOREGROUND_MASK_KEY, IMAGE_KEY

__all__ = ["DynamicTextureOverlay"]

_REGIONS = ("foreground", "image")


def _as_texture(texture: torch.Tensor | np.ndarray, index: int) -> torch.Tensor:
    if isinstance(texture, np.ndarray):
        texture = torch.from_numpy(np.ascontiguousarray(texture))
    if not isinstance(texture, torch.Tensor):
        raise TypeError(
            f"textures[{index}] is a {type(texture).__name__}; pass uint8 HxWx3 torch tensors "
            "or numpy arrays"
        )
    if texture.dtype != torch.uint8 or texture.ndim != 3 or texture.shape[-1] != 3:
        raise ValueError(
            f"textures[{index}] has dtype {texture.dtype} and shape {tuple(texture.shape)}; "
            "expected uint8 of shape (H, W, 3) (RGB, channels last)"
        )
    if texture.shape[0] < 1 or texture.shape[1] < 1:
        raise ValueError(f"textures[{index}] is empty (shape {tuple(texture.shape)})")
    return texture.cpu()


def _source_index(
    size: torch.Tensor, start: torch.Tensor, out: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear source rows (or columns) for resizing windows of ``size`` pixels to ``out``.

    Same convention as ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``
    applied to the cropped window: half-pixel centres, source coordinate clamped to the window.

    Args:
        size: ``[n]`` window sizes (pixels, >= 1).
        start: ``[n]`` window offsets in the texture.
        out: output size.

    Returns:
        ``(i0, i1, weight)``: ``[n, out]`` texture indices of the two neighbours and the weight
        of ``i1``.
    """
    dst = torch.arange(out, dtype=torch.float32) + 0.5
    src = (dst[None, :] * (size[:, None].float() / out) - 0.5).clamp_min(0.0)
    i0 = src.floor().long().clamp_max(size[:, None] - 1)
    i1 = (i0 + 1).clamp_max(size[:, None] - 1)
    weight = src - i0.float()
    return start[:, None] + i0, start[:, None] + i1, weight


class DynamicTextureOverlay(Transform):
    """Blend an episode-wise texture, cropped and resized anew at every step, over the image.

    At each reset, every reset env draws one texture from ``textures``. At that reset and at
    every step after it, each env draws a random window of its texture (side lengths a uniform
    fraction in ``crop_scale`` of the texture's sides, uniform position), resizes it bilinearly
    to the image size and blends it over the image (Appendix A.4)::

        out = (1 - alpha) * image + alpha * texture     on the region
        out = image                                     elsewhere

    rounded to the nearest integer (ties to even, as ``torch.round``) and stored as uint8. The
    region is the foreground mask (object, receptacle, robot arm) for ``region="foreground"``
    (the paper's *Dynamic Texture*, weak: ``alpha=0.3``, strong: ``alpha=0.5``) and the whole
    frame for ``region="image"`` (*Dynamic Noise*, same alphas).

    It works on any batch shape (``[*B, H, W, 3]`` images), on the reset output and on
    ``("next", image)`` after every step, and on partial resets (only the reset envs draw a new
    texture). All randomness comes from the transform's own generator, so with a ``seed`` the
    same sequence of ``reset``/``step`` calls gives the same frames. After each call,
    :attr:`texture_index` (``[num_envs]``) and :attr:`last_crop` (``[num_envs, 4]``: top, left,
    height, width in texture pixels) tell what was drawn.

    Args:
        textures: RGB textures, uint8 ``(H, W, 3)`` torch tensors or numpy arrays; sizes may
            differ.
        alpha: image mixing transparency in ``(0, 1]``.
        region: ``"foreground"`` (blend where ``mask_key`` is true) or ``"image"`` (everywhere).
        image_key: the uint8 ``[*B, H, W, 3]`` image entry.
        mask_key: the bool ``[*B, H, W]`` foreground mask entry (read only when
            ``region="foreground"``).
        seed: seed of the transform's generator; ``None`` draws one from the OS.
        crop_scale: range of the crop's side lengths as fractions of the texture's sides
            (not given in the paper; ``(0.25, 1.0)`` by default).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from vla_torchrl.keys import IMAGE_KEY
        >>> overlay = DynamicTextureOverlay(
        ...     [torch.full((8, 8, 3), 200, dtype=torch.uint8)], alpha=0.3, region="image", seed=0
        ... )
        >>> frame = TensorDict({IMAGE_KEY: torch.full((2, 4, 4, 3), 100, dtype=torch.uint8)}, [2])
        >>> out = overlay._reset(TensorDict({}, [2]), frame)
        >>> out[IMAGE_KEY][0, 0, 0].tolist()  # 0.7 * 100 + 0.3 * 200
        [130, 130, 130]
    """

    def __init__(
        self,
        textures: Sequence[torch.Tensor | np.ndarray],
        *,
        alpha: float,
        region: Literal["foreground", "image"],
        image_key: NestedKey = IMAGE_KEY,
        mask_key: NestedKey = FOREGROUND_MASK_KEY,
        seed: int | None = None,
        crop_scale: tuple[float, float] = (0.25, 1.0),
    ) -> None:
        if isinstance(textures, torch.Tensor | np.ndarray) and textures.ndim == 3:
            raise TypeError("textures should be a sequence of (H, W, 3) images, got a single image")
        textures = list(textures)
        if not textures:
            raise ValueError("textures is empty; pass at least one uint8 (H, W, 3) texture")
        if not isinstance(alpha, int | float) or not 0.0 < float(alpha) <= 1.0:
            raise ValueError(
                f"alpha={alpha!r} is outside (0, 1]; the paper uses 0.3 (weak) and 0.5 (strong)"
            )
        if region not in _REGIONS:
            raise ValueError(f"region={region!r} is not one of {_REGIONS}")
        lo, hi = (float(v) for v in crop_scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale={crop_scale!r} should satisfy 0 < low <= high <= 1")
        in_keys = [image_key] if region == "image" else [image_key, mask_key]
        super().__init__(in_keys=in_keys, out_keys=[image_key])
        self.alpha = float(alpha)
        self.region = region
        self.image_key = image_key
        self.mask_key = mask_key
        self.crop_scale = (lo, hi)
        # Pad every texture into one [N, Hmax, Wmax, 3] buffer; crops never read the padding.
        images = [_as_texture(t, i) for i, t in enumerate(textures)]
        height = max(t.shape[0] for t in images)
        width = max(t.shape[1] for t in images)
        stack = torch.zeros(len(images), height, width, 3, dtype=torch.uint8)
        for i, t in enumerate(images):
            stack[i, : t.shape[0], : t.shape[1]] = t
        self.register_buffer("textures", stack, persistent=False)
        self.register_buffer(
            "texture_sizes",
            torch.tensor([[t.shape[0], t.shape[1]] for t in images], dtype=torch.long),
            persistent=False,
        )
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.texture_index: torch.Tensor | None = None
        self.last_crop: torch.Tensor | None = None

    @property
    def num_textures(self) -> int:
        return self.textures.shape[0]

    # -- sampling -------------------------------------------------------------------------------
    def _sample_crops(self, num_envs: int) -> torch.Tensor:
        """Draw a window per env in its current texture: ``[num_envs, 4]`` (top, left, h, w)."""
        sizes = self.texture_sizes.cpu()[self.texture_index.cpu()]  # [n, 2]
        lo, hi = self.crop_scale
        frac = lo + (hi - lo) * torch.rand(num_envs, 2, generator=self.generator)
        extent = (frac * sizes.float()).round().long().clamp(min=1).minimum(sizes)
        slack = sizes - extent + 1
        offset = (torch.rand(num_envs, 2, generator=self.generator) * slack).long()
        offset = offset.minimum(slack - 1)
        return torch.cat([offset, extent], dim=-1)

    def _render_textures(self, crops: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Crop and resize each env's texture to ``[n, height, width, 3]`` float32."""
        rows0, rows1, wy = _source_index(crops[:, 2], crops[:, 0], height)
        cols0, cols1, wx = _source_index(crops[:, 3], crops[:, 1], width)
        device = self.textures.device
        index = self.texture_index.to(device)[:, None, None]
        rows0, rows1, cols0, cols1 = (t.to(device) for t in (rows0, rows1, cols0, cols1))
        wy = wy.to(device)[:, :, None, None]
        wx = wx.to(device)[:, None, :, None]

        def gather(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            return self.textures[index, rows[:, :, None], cols[:, None, :]].float()

        top = torch.lerp(gather(rows0, cols0), gather(rows0, cols1), wx)
        bottom = torch.lerp(gather(rows1, cols0), gather(rows1, cols1), wx)
        return torch.lerp(top, bottom, wy)

    # -- applying -------------------------------------------------------------------------------
    def _overlay(self, tensordict: TensorDictBase, apply: torch.Tensor | None = None) -> None:
        image = tensordict.get(self.image_key, None)
        if image is None:
            raise KeyError(f"{type(self).__name__}: no image entry {self.image_key!r}")
        check_hwc_image(type(self).__name__, self.image_key, image.shape, image.dtype)
        height, width = image.shape[-3:-1]
        num_envs = math.prod(image.shape[:-3])
        if self.texture_index is None or self.texture_index.numel() != num_envs:
            raise RuntimeError(
                f"{type(self).__name__} has no texture for {num_envs} envs; reset the env before "
                "stepping it (textures are drawn at reset)"
            )
        flat = image.reshape(num_envs, height, width, 3)
        crops = self._sample_crops(num_envs)
        self.last_crop = crops
        texture = self._render_textures(crops, height, width).to(flat.device)
        blended = ((1.0 - self.alpha) * flat.float() + self.alpha * texture).round()
        blended = blended.clamp(0, 255).to(torch.uint8)
        region = torch.ones(num_envs, height, width, 1, dtype=torch.bool, device=flat.device)
        if self.region == "foreground":
            mask = tensordict.get(self.mask_key, None)
            if mask is None:
                raise KeyError(
                    f"{type(self).__name__}(region='foreground') needs the mask entry "
                    f"{self.mask_key!r}; the env does not write it (use region='image' or an env "
                    "that writes a foreground mask)"
                )
            region = mask.reshape(num_envs, height, width, 1).to(flat.device, torch.bool)
        if apply is not None:
            region = region & apply.to(flat.device)[:, None, None, None]
        out = torch.where(region, blended, flat)
        tensordict.set(self.image_key, out.reshape(image.shape))

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        image = tensordict_reset.get(self.image_key, None)
        if image is None:
            raise KeyError(f"{type(self).__name__}: no image entry {self.image_key!r} at reset")
        check_hwc_image(type(self).__name__, self.image_key, image.shape, image.dtype)
        num_envs = math.prod(image.shape[:-3])
        mask = reset_mask(self, tensordict, num_envs)
        # partial reset: only the reset envs change texture (Appendix A.4: once per episode)
        self.texture_index = draw_per_episode(
            self.texture_index, mask, self.num_textures, self.generator
        )
        self._overlay(tensordict_reset, apply=mask)
        return tensordict_reset

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        self._overlay(next_tensordict)
        return next_tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise not_for_stored_data(self)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        keys = [self.image_key] + ([self.mask_key] if self.region == "foreground" else [])
        for key in keys:
            if key not in observation_spec.keys(True, True):
                raise KeyError(
                    f"{type(self).__name__}: the env's observation spec has no {key!r} "
                    f"(it has {list(observation_spec.keys(True, True))})"
                )
        image = observation_spec[self.image_key]
        check_hwc_image(type(self).__name__, self.image_key, image.shape, image.dtype)
        return observation_spec

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_textures={self.num_textures}, alpha={self.alpha}, "
            f"region={self.region!r}, crop_scale={self.crop_scale})"
        )
