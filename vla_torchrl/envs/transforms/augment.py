"""Training-time image augmentation: random shift and brightness / contrast jitter.

Behaviour cloning from a few hundred demonstrations overfits the exact pixels of the training
frames; a random shift of a few pixels (DrQ-style: replicate-pad, then crop back) and a mild
photometric jitter are the usual cure. :class:`ImageAugmentation` is a TorchRL transform on the
toolkit's HWC uint8 image key, so it applies to a demonstration minibatch (``aug(td)``) as well
as to an env (``TransformedEnv(env, aug)``, e.g. to see what the policy is trained on).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from vla_torchrl.keys import IMAGE_KEY
    >>> aug = ImageAugmentation(shift=2, brightness=0.0, contrast=0.0, seed=0)
    >>> td = TensorDict({IMAGE_KEY: torch.zeros(4, 8, 8, 3, dtype=torch.uint8)}, [4])
    >>> aug(td)[IMAGE_KEY].shape, aug(td)[IMAGE_KEY].dtype
    (torch.Size([4, 8, 8, 3]), torch.uint8)
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Composite
from torchrl.envs.transforms import Transform

from vla_torchrl.envs.transforms._common import check_hwc_image
from vla_torchrl.keys import IMAGE_KEY

__all__ = ["ImageAugmentation"]


class ImageAugmentation(Transform):
    """Random shift by up to ``shift`` pixels, then brightness and contrast jitter, per image.

    Args:
        shift: largest shift in pixels along each axis (edges replicated); 0 for none.
        brightness: images are scaled by a factor uniform in ``[1 - b, 1 + b]``.
        contrast: deviations from each image's mean are scaled by ``[1 - c, 1 + c]``.
        seed: seed of the transform's own generator (``None``: torch's global RNG).
        in_keys: image keys (HWC uint8, any leading batch dims).
    """

    def __init__(
        self,
        *,
        shift: int = 4,
        brightness: float = 0.1,
        contrast: float = 0.1,
        seed: int | None = None,
        in_keys: list[NestedKey] | None = None,
    ) -> None:
        if shift < 0 or brightness < 0 or contrast < 0:
            raise ValueError(
                f"ImageAugmentation(shift={shift}, brightness={brightness}, contrast={contrast}): "
                "all must be >= 0"
            )
        keys = in_keys or [IMAGE_KEY]
        super().__init__(in_keys=keys, out_keys=keys)
        self.shift, self.brightness, self.contrast = int(shift), float(brightness), float(contrast)
        self._gen = None if seed is None else torch.Generator().manual_seed(seed)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self._gen)

    def _check(self, tensordict: TensorDictBase) -> None:
        for key in self.in_keys:
            image = tensordict.get(key, None)
            if image is not None:
                check_hwc_image(type(self).__name__, key, image.shape, image.dtype)

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        self._check(next_tensordict)
        return super()._call(next_tensordict)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        self._check(tensordict)
        return super().forward(tensordict)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for key in self.in_keys:
            if key not in observation_spec.keys(True, True):
                raise KeyError(
                    f"{type(self).__name__}: the env's observation spec has no {key!r} "
                    f"(it has {list(observation_spec.keys(True, True))})"
                )
            spec = observation_spec[key]
            check_hwc_image(type(self).__name__, key, spec.shape, spec.dtype)
        return observation_spec

    def _apply_transform(self, image: torch.Tensor) -> torch.Tensor:
        lead = image.shape[:-3]
        h, w = image.shape[-3], image.shape[-2]
        x = image.reshape(-1, h, w, 3)
        n, s = x.shape[0], self.shift
        if s > 0:
            # replicate-pad by index clamping, then crop each image at its own offset
            off = (self._rand(n, 2) * (2 * s + 1)).long().clamp_max(2 * s) - s
            rows = (torch.arange(h)[None] + off[:, :1]).clamp(0, h - 1)  # [n, h]
            cols = (torch.arange(w)[None] + off[:, 1:]).clamp(0, w - 1)  # [n, w]
            x = x[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        if self.brightness or self.contrast:
            f = x.float()
            mean = f.mean(dim=(1, 2, 3), keepdim=True)
            c = 1.0 + self.contrast * (2.0 * self._rand(n, 1, 1, 1) - 1.0)
            b = 1.0 + self.brightness * (2.0 * self._rand(n, 1, 1, 1) - 1.0)
            x = (((f - mean) * c + mean) * b).round().clamp(0, 255).to(torch.uint8)
        return x.reshape(*lead, h, w, 3)

    def _reset(self, tensordict, tensordict_reset):
        return self._call(tensordict_reset)
