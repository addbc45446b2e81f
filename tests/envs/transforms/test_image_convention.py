"""The HWC uint8 image convention: our envs declare it, our transforms check it, and the README's
permute recipe makes stock (CHW) TorchRL image transforms work on our envs."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import CenterCrop, Compose, PermuteTransform, TransformedEnv

from vla_torchrl.envs.specs import set_vla_specs
from vla_torchrl.envs.toy import make_toy_env
from vla_torchrl.envs.transforms import DynamicTextureOverlay, ImageAugmentation
from vla_torchrl.keys import ACTION_KEY, IMAGE_KEY

TO_CHW, TO_HWC = (-1, -3, -2), (-2, -1, -3)
WHITE = [torch.full((8, 8, 3), 255, dtype=torch.uint8)]


def _ours():
    return {
        "ImageAugmentation": lambda: ImageAugmentation(seed=0),
        "DynamicTextureOverlay": lambda: DynamicTextureOverlay(
            WHITE, alpha=0.5, region="image", seed=0
        ),
    }


def test_envs_declare_hwc_uint8_images():
    env = make_toy_env(2, seed=0, image_size=16)
    spec = env.observation_spec[IMAGE_KEY]
    assert (tuple(spec.shape), spec.dtype) == ((2, 16, 16, 3), torch.uint8)
    frame = env.reset()[IMAGE_KEY]
    assert (tuple(frame.shape), frame.dtype) == ((2, 16, 16, 3), torch.uint8)
    # the ManiSkill env declares its specs with the same helper (H, W of its camera)
    from torchrl.envs import EnvBase

    class _Env(EnvBase):
        def __init__(self):
            super().__init__(batch_size=torch.Size([3]))
            set_vla_specs(self, image_size=(5, 7), state_dim=1, instruction_example="x")

        _reset = _step = _set_seed = None

    spec = _Env().observation_spec[IMAGE_KEY]
    assert (tuple(spec.shape), spec.dtype) == ((3, 5, 7, 3), torch.uint8)


@pytest.mark.parametrize("name", list(_ours()))
def test_our_transforms_reject_a_channels_first_env_at_construction(name):
    env = TransformedEnv(make_toy_env(2, seed=0), PermuteTransform(TO_CHW, in_keys=[IMAGE_KEY]))
    env.append_transform(_ours()[name]())
    with pytest.raises(ValueError) as info:
        env.observation_spec  # noqa: B018 - the transformed spec is computed (and checked) here
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: {IMAGE_KEY!r} should be HWC uint8")
    assert "(2, 3, 32, 32)" in message and "PermuteTransform((-2, -1, -3))" in message


@pytest.mark.parametrize(
    ("image", "seen"),
    [
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "torch.uint8 (2, 3, 8, 8); channels first?"),
        (torch.zeros(2, 8, 8, 3), "torch.float32 (2, 8, 8, 3)"),
    ],
)
def test_image_augmentation_names_the_key_and_shape_of_a_bad_image(image, seen):
    with pytest.raises(ValueError) as info:
        ImageAugmentation()(TensorDict({IMAGE_KEY: image}, [2]))
    assert str(info.value).startswith(
        f"ImageAugmentation: {IMAGE_KEY!r} should be HWC uint8 [*B, H, W, 3], got {seen}"
    )
    assert "\n" not in str(info.value)


def test_permute_recipe_runs_stock_chw_transforms_on_the_toy_env():
    """PermuteTransform to CHW, a stock CenterCrop, PermuteTransform back: the frames are the
    centre 24 x 24 pixels of the untransformed env's frames, HWC uint8, and our transforms and
    the spec accept them."""
    base = make_toy_env(2, seed=3)
    reference = make_toy_env(2, seed=3)
    recipe = Compose(
        PermuteTransform(TO_CHW, in_keys=[IMAGE_KEY]),
        CenterCrop(24, in_keys=[IMAGE_KEY]),
        PermuteTransform(TO_HWC, in_keys=[IMAGE_KEY]),
    )
    env = TransformedEnv(base, recipe)
    env.append_transform(ImageAugmentation(shift=0, brightness=0.0, contrast=0.0))
    spec = env.observation_spec[IMAGE_KEY]
    assert (tuple(spec.shape), spec.dtype) == ((2, 24, 24, 3), torch.uint8)

    td, ref = env.reset(), reference.reset()
    assert torch.equal(td[IMAGE_KEY], ref[IMAGE_KEY][:, 4:28, 4:28, :])
    for _ in range(3):
        action = reference.oracle_action()
        td = env.step(td.set(ACTION_KEY, action))
        ref = reference.step(ref.set(ACTION_KEY, action))
        assert torch.equal(td["next", IMAGE_KEY], ref["next", IMAGE_KEY][:, 4:28, 4:28, :])
        td, ref = td["next"].clone(), ref["next"].clone()
