"""DynamicTextureOverlay against hand computations (paper Appendix A.4, Dynamic Texture/Noise)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torchrl.envs import TransformedEnv

from vla_torchrl.envs.transforms import DynamicTextureOverlay
from vla_torchrl.keys import ACTION_KEY, FOREGROUND_MASK_KEY, IMAGE_KEY

B, H, W = 3, 6, 8


def _image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 250, (B, H, W, 3), generator=g)
    # 0.7 * x + 0.3 * 200 is a tie (xx.5) exactly when x % 10 == 5: keep away from ties
    image[image % 10 == 5] += 1
    return image.to(torch.uint8)


def _mask() -> torch.Tensor:
    mask = torch.zeros(B, H, W, dtype=torch.bool)
    mask[:, 1:4, 2:7] = True
    mask[1, 5, 0] = True
    return mask


def _step(env, td):
    td.set(ACTION_KEY, torch.zeros(B, 7))
    return env.step(td)["next"]


def _blend_by_hand(image: torch.Tensor, texture_value: int, alpha_tenths: int) -> torch.Tensor:
    """round((1 - a) x + a t) with a = alpha_tenths / 10, computed exactly on integers."""
    num = (10 - alpha_tenths) * image.long() + alpha_tenths * texture_value  # 10 * blend
    return torch.div(num + 5, 10, rounding_mode="floor")  # no ties by construction


def test_foreground_blend_at_alpha_03_equals_the_formula(mock_env):
    image, mask = _image(), _mask()
    texture = torch.full((20, 30, 3), 200, dtype=torch.uint8)  # any crop/resize of it is 200
    env = TransformedEnv(
        mock_env(image, mask),
        DynamicTextureOverlay([texture], alpha=0.3, region="foreground", seed=0),
    )
    expected = torch.where(mask[..., None], _blend_by_hand(image, 200, 3), image.long())
    td = env.reset()
    assert torch.equal(td[IMAGE_KEY].long(), expected)
    for _ in range(3):
        td = _step(env, td)
        assert torch.equal(td[IMAGE_KEY].long(), expected)
    # outside the mask, pixels are the env's, untouched
    assert torch.equal(td[IMAGE_KEY][~mask], image[~mask])
    # a hand-checked pixel: env 0, row 1, col 2
    x = int(image[0, 1, 2, 0])
    assert int(td[IMAGE_KEY][0, 1, 2, 0]) == round(0.7 * x + 0.3 * 200)


def test_uncropped_texture_of_image_size_blends_pixel_by_pixel(mock_env):
    # crop_scale (1, 1) and a texture of the image's size: crop + resize is the identity
    image, mask = _image(1), _mask()
    g = torch.Generator().manual_seed(3)
    texture = torch.randint(0, 256, (H, W, 3), generator=g, dtype=torch.uint8)
    overlay = DynamicTextureOverlay(
        [texture], alpha=0.5, region="foreground", seed=0, crop_scale=(1.0, 1.0)
    )
    env = TransformedEnv(mock_env(image, mask), overlay)
    td = _step(env, env.reset())
    out = td[IMAGE_KEY]
    for b in range(B):
        for i in range(H):
            for j in range(W):
                for c in range(3):
                    x, t = int(image[b, i, j, c]), int(texture[i, j, c])
                    want = round((x + t) / 2) if mask[b, i, j] else x  # Python round: half to even
                    assert int(out[b, i, j, c]) == want, (b, i, j, c)


def test_blend_matches_an_independent_crop_and_resize(mock_env):
    image, mask = _image(2), _mask()
    g = torch.Generator().manual_seed(4)
    textures = [
        torch.randint(0, 256, (17, 23, 3), generator=g, dtype=torch.uint8),
        torch.randint(0, 256, (5, 40, 3), generator=g, dtype=torch.uint8),
    ]
    overlay = DynamicTextureOverlay(textures, alpha=0.3, region="foreground", seed=5)
    env = TransformedEnv(mock_env(image, mask), overlay)
    td = env.reset()
    for _ in range(4):
        td = _step(env, td)
        for b in range(B):
            top, left, h, w = overlay.last_crop[b].tolist()
            tex = textures[int(overlay.texture_index[b])]
            window = tex[top : top + h, left : left + w].permute(2, 0, 1)[None].double()
            resized = F.interpolate(window, size=(H, W), mode="bilinear", align_corners=False)
            resized = resized[0].permute(1, 2, 0)
            blend = (0.7 * image[b].double() + 0.3 * resized).round()
            want = torch.where(mask[b, ..., None], blend, image[b].double())
            diff = (td[IMAGE_KEY][b].double() - want).abs()
            assert diff.max() <= 1  # float32 vs float64 rounding at .5 ties
            assert (diff == 0).float().mean() > 0.97


def test_region_image_blends_every_pixel(mock_env):
    image, mask = _image(), _mask()
    texture = torch.full((9, 9, 3), 200, dtype=torch.uint8)
    env = TransformedEnv(
        mock_env(image, mask), DynamicTextureOverlay([texture], alpha=0.3, region="image", seed=0)
    )
    td = _step(env, env.reset())
    assert torch.equal(td[IMAGE_KEY].long(), _blend_by_hand(image, 200, 3))


def test_region_image_needs_no_mask(mock_env):
    image = _image()
    texture = torch.full((4, 4, 3), 10, dtype=torch.uint8)
    env = TransformedEnv(
        mock_env(image, None), DynamicTextureOverlay([texture], alpha=0.5, region="image", seed=0)
    )
    td = env.reset()
    assert FOREGROUND_MASK_KEY not in td.keys(True)
    x = int(image[2, 3, 4, 1])
    assert int(td[IMAGE_KEY][2, 3, 4, 1]) == round(0.5 * x + 0.5 * 10)


def test_crop_changes_from_step_to_step(mock_env):
    g = torch.Generator().manual_seed(0)
    texture = torch.randint(0, 256, (64, 64, 3), generator=g, dtype=torch.uint8)
    overlay = DynamicTextureOverlay([texture], alpha=0.5, region="image", seed=1)
    env = TransformedEnv(mock_env(_image(), _mask()), overlay)
    td = env.reset()
    crops, frames = [overlay.last_crop.clone()], [td[IMAGE_KEY].clone()]
    for _ in range(5):
        td = _step(env, td)
        crops.append(overlay.last_crop.clone())
        frames.append(td[IMAGE_KEY].clone())
    for t in range(1, len(crops)):
        for b in range(B):
            assert not torch.equal(crops[t][b], crops[t - 1][b])
            assert not torch.equal(frames[t][b], frames[t - 1][b])
    # the crops stay inside the texture
    all_crops = torch.stack(crops).reshape(-1, 4)
    assert (all_crops[:, :2] >= 0).all() and (all_crops[:, 2:] >= 1).all()
    assert (all_crops[:, 0] + all_crops[:, 2] <= 64).all()
    assert (all_crops[:, 1] + all_crops[:, 3] <= 64).all()


def _rollout(env, steps: int = 3) -> list[torch.Tensor]:
    td = env.reset()
    frames = [td[IMAGE_KEY].clone()]
    for _ in range(steps):
        td = _step(env, td)
        frames.append(td[IMAGE_KEY].clone())
    return frames


def _textures(n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randint(0, 256, (12, 12, 3), generator=g, dtype=torch.uint8) for _ in range(n)]


def test_same_seed_same_frames_other_seed_other_frames(mock_env):
    def frames(seed):
        overlay = DynamicTextureOverlay(_textures(), alpha=0.3, region="foreground", seed=seed)
        return _rollout(TransformedEnv(mock_env(_image(), _mask()), overlay))

    first, again, other = frames(11), frames(11), frames(12)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_partial_reset_draws_a_texture_for_the_reset_env_only(mock_env):
    # 16 constant textures: the blended value tells which texture an env uses
    values = list(range(0, 160, 10))
    textures = [torch.full((8, 8, 3), v, dtype=torch.uint8) for v in values]
    image = torch.full((B, H, W, 3), 100, dtype=torch.uint8)
    overlay = DynamicTextureOverlay(textures, alpha=0.5, region="image", seed=3)
    env = TransformedEnv(mock_env(image, None), overlay)

    def used(td):  # 0.5 * 100 + 0.5 * v = 50 + v / 2 (exact)
        return [(int(td[IMAGE_KEY][b, 0, 0, 0]) - 50) * 2 for b in range(B)]

    td = _step(env, env.reset())
    start = used(td)
    assert start == [values[int(i)] for i in overlay.texture_index]
    seen_for_env1 = {start[1]}
    for _ in range(12):
        td.set("_reset", torch.tensor([[False], [True], [False]]))
        td = env.reset(td)
        td = _step(env, td)
        now = used(td)
        assert now[0] == start[0] and now[2] == start[2]  # untouched envs keep their texture
        seen_for_env1.add(now[1])
    assert len(seen_for_env1) > 1  # the reset env draws again (16 choices, 12 draws)


def test_any_batch_shape_when_called_directly():
    texture = torch.full((5, 5, 3), 200, dtype=torch.uint8)
    overlay = DynamicTextureOverlay([texture], alpha=0.3, region="image", seed=0)
    image = torch.full((2, 3, 4, 4, 3), 100, dtype=torch.uint8)
    out = overlay._reset(TensorDict({}, [2, 3]), TensorDict({IMAGE_KEY: image}, [2, 3]))
    assert out[IMAGE_KEY].shape == image.shape
    assert (out[IMAGE_KEY] == 130).all()
    assert overlay.texture_index.shape == (6,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 0.0, "region": "image"}, ValueError, "alpha"),
        ({"alpha": 1.5, "region": "image"}, ValueError, "alpha"),
        ({"alpha": 0.3, "region": "background"}, ValueError, "region"),
        ({"alpha": 0.3, "region": "image", "crop_scale": (0.0, 1.0)}, ValueError, "crop_scale"),
    ],
)
def test_bad_options_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        DynamicTextureOverlay([torch.zeros(4, 4, 3, dtype=torch.uint8)], **kwargs)


def test_bad_textures_are_refused():
    with pytest.raises(ValueError, match="empty"):
        DynamicTextureOverlay([], alpha=0.3, region="image")
    with pytest.raises(ValueError, match=r"textures\[1\].*uint8"):
        DynamicTextureOverlay(
            [torch.zeros(4, 4, 3, dtype=torch.uint8), torch.zeros(4, 4, 3)],
            alpha=0.3,
            region="image",
        )
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        DynamicTextureOverlay([torch.zeros(4, 4, dtype=torch.uint8)], alpha=0.3, region="image")


def test_numpy_textures_are_accepted(mock_env):
    import numpy as np

    texture = np.full((6, 6, 3), 200, dtype=np.uint8)
    env = TransformedEnv(
        mock_env(_image(), _mask()),
        DynamicTextureOverlay([texture], alpha=0.3, region="image", seed=0),
    )
    assert torch.equal(env.reset()[IMAGE_KEY].long(), _blend_by_hand(_image(), 200, 3))


def test_foreground_without_a_mask_in_the_env_is_an_error(mock_env):
    overlay = DynamicTextureOverlay(
        [torch.zeros(4, 4, 3, dtype=torch.uint8)], alpha=0.3, region="foreground"
    )
    env = TransformedEnv(mock_env(_image(), None), overlay)
    with pytest.raises(KeyError, match="foreground_mask"):
        env.reset()
