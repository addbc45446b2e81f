"""The perception objectives on privileged labels (objectives/perception.py) against hand-computed
values, plain formulas and the properties they must have."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.keys import IMAGE_KEY
from vla_torchrl.objectives.perception import (
    TARGETS_KEY,
    KeypointHead,
    OrientationHead,
    PerceptionLoss,
    PositionHead,
    decode_keypoints,
    decode_orientation,
    encode_keypoints,
    keypoint_loss,
    orientation_errors_deg,
    orientation_targets,
    position_loss,
    position_targets,
    shift_images,
)


def test_keypoint_codec_round_trips_and_scores_zero():
    g = torch.Generator().manual_seed(0)
    target = torch.cat([torch.rand(5, 3, 2, generator=g), 0.4 + 0.2 * torch.rand(5, 3, 1)], -1)
    pred = encode_keypoints(target, grid=8, depth_mean=0.5, depth_std=0.05)
    assert torch.allclose(decode_keypoints(pred, 8, 0.5, 0.05), target, atol=1e-5)
    loss, parts = keypoint_loss(pred, target, 8, 0.5, 0.05)
    assert parts["kp_l1"] == pytest.approx(0.0, abs=1e-6)
    assert parts["kp_dz"] == pytest.approx(0.0, abs=1e-6)
    # logit 30 at the true patch, 0 at the 63 others: CE = log(1 + 63 e^-30)
    assert parts["kp_ce"] == pytest.approx(math.log1p(63 * math.exp(-30)), abs=1e-9)
    assert float(loss) == pytest.approx(parts["kp_ce"], abs=1e-5)


def test_keypoint_loss_hand_computed():
    # one point at x 0.3, y 0.7, 0.6 m on a 2 x 2 grid: patch (col 0, row 1) = index 2, offset
    # (0.6, 0.4) in patch units; an all-zero prediction: CE log 4, L1 0.6 + 0.4, depth
    # ((0.6 - 0.5) / 0.1)^2 = 1  ->  log 4 + 10 * 1.0 + 1
    target = torch.tensor([[[0.3, 0.7, 0.6]]])
    loss, parts = keypoint_loss(torch.zeros(1, 1, 4, 4), target, 2, 0.5, 0.1)
    assert parts == pytest.approx({"kp_ce": math.log(4), "kp_l1": 1.0, "kp_dz": 1.0})
    assert float(loss) == pytest.approx(math.log(4) + 10.0 + 1.0)


def test_points_outside_the_frame_are_left_out():
    inside = torch.tensor([[[0.3, 0.7, 0.6]]])
    both = torch.tensor([[[0.3, 0.7, 0.6], [1.2, 0.5, 0.6]]])  # the second is right of the frame
    pred = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    alone, _ = keypoint_loss(pred[:, :1], inside, 2, 0.5, 0.1)
    mixed, _ = keypoint_loss(pred, both, 2, 0.5, 0.1)
    assert float(mixed) == pytest.approx(float(alone))


def test_shifted_images_carry_their_labels():
    """A bright pixel drawn at each label: after :func:`shift_images`, the pixel sits at the
    label plus the displacement returned, and the head output encoding the unshifted labels
    moved by it scores zero offset and depth error with ``shift=``."""
    n, size = 6, 16
    g = torch.Generator().manual_seed(2)
    pixel = torch.randint(4, size - 4, (n, 2), generator=g)  # (row, col), away from the edges
    images = torch.zeros(n, size, size, 1)
    images[torch.arange(n), pixel[:, 0], pixel[:, 1]] = 1.0
    target = torch.cat([(pixel.flip(-1) + 0.5) / size, torch.full((n, 1), 0.5)], -1)[:, None]
    moved_images, moved = shift_images(images, 3, g)
    assert moved.abs().max() > 0  # the seed moves some image
    row, col = (
        (moved_images[..., 0].flatten(1).argmax(-1)).div(size, rounding_mode="floor"),
        (moved_images[..., 0].flatten(1).argmax(-1) % size),
    )
    seen = torch.stack([(col + 0.5) / size, (row + 0.5) / size], -1)
    assert torch.allclose(seen, target[:, 0, :2] + moved)
    shifted_target = torch.cat([target[..., :2] + moved[:, None], target[..., 2:]], -1)
    pred = encode_keypoints(shifted_target, grid=4, depth_mean=0.5, depth_std=0.1)
    _, parts = keypoint_loss(pred, target, 4, 0.5, 0.1, shift=moved)
    assert parts["kp_l1"] == pytest.approx(0.0, abs=1e-6) and parts["kp_dz"] == pytest.approx(0.0)
    assert shift_images(images, 0)[0] is images


def test_position_loss_against_the_formulas():
    g = torch.Generator().manual_seed(3)
    reg, grasp, phase_logits = torch.randn(4, 12, generator=g), torch.randn(4), torch.randn(4, 8)
    z, grasped, phase = torch.randn(4, 12, generator=g), torch.tensor([1, 0, 1, 0]), torch.arange(4)
    loss, parts = position_loss((reg, grasp, phase_logits), z, grasped, phase)
    mse = sum((a - b) ** 2 for a, b in zip(reg.flatten().tolist(), z.flatten().tolist())) / 48
    sig = [1 / (1 + math.exp(-x)) for x in grasp.tolist()]
    bce = -sum(math.log(s) if y else math.log(1 - s) for s, y in zip(sig, grasped.tolist())) / 4
    ce = (
        -sum(
            row[k] - math.log(sum(math.exp(v) for v in row))
            for row, k in zip(phase_logits.tolist(), phase.tolist())
        )
        / 4
    )
    assert parts == pytest.approx({"mse": mse, "bce": bce, "ce": ce}, rel=1e-5)
    assert float(loss) == pytest.approx(mse + bce + ce, rel=1e-5)


def test_targets_from_the_privileged_state_decode_back():
    g = torch.Generator().manual_seed(4)
    q, _ = torch.linalg.qr(torch.randn(5, 3, 3, generator=g))
    rot = q * torch.linalg.det(q)[:, None, None]  # proper rotations (det +1)
    yaw = (torch.rand(5, generator=g) - 0.5) * math.pi * 0.99
    state = TensorDict(
        {
            "tcp_position": torch.randn(5, 3, generator=g),
            "object_position": torch.randn(5, 3, generator=g),
            "receptacle_position": torch.randn(5, 3, generator=g),
            "tcp_rotation": rot,
            "object_yaw": yaw + math.pi,  # yaw + pi: the same lie of the object
        },
        [5],
    )
    pos = position_targets(state)
    assert torch.equal(pos[:, 9:], state["tcp_position"] - state["object_position"])
    got_rot, got_yaw = decode_orientation(orientation_targets(state))
    d_rot, d_yaw = orientation_errors_deg(got_rot, got_yaw, rot, yaw)
    assert d_rot.max() < 0.1 and d_yaw.max() < 1e-3
    # a quarter turn about z is 90 degrees away
    quarter = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    d, _ = orientation_errors_deg(quarter, torch.zeros(1), torch.eye(3)[None], torch.zeros(1))
    assert float(d[0]) == pytest.approx(90.0, abs=1e-3)


def _targets(b: int, grid: int) -> TensorDict:
    g = torch.Generator().manual_seed(5)
    return TensorDict(
        {
            "position_z": torch.randn(b, 12, generator=g),
            "grasped": torch.rand(b, generator=g) > 0.5,
            "phase": torch.randint(0, 8, (b,), generator=g),
            "keypoints": torch.cat(
                [torch.rand(b, 3, 2, generator=g), torch.full((b, 3, 1), 0.5)], -1
            ),
            "shift": torch.zeros(b, 2),
            "orientation_z": torch.randn(b, 11, generator=g),
        },
        [b],
    )


def test_perception_loss_is_the_weighted_sum_and_frozen_heads_anchor_the_encoder():
    torch.manual_seed(0)
    hidden, grid, b = 8, 2, 3
    encoder = torch.nn.Linear(5, hidden)  # "frames" [B, 4, 5] -> 4 patches
    heads = dict(
        position_head=PositionHead(hidden, grid * grid),
        keypoint_head=KeypointHead(hidden),
        orientation_head=OrientationHead(hidden, grid * grid),
    )
    for head in heads.values():
        head.requires_grad_(False)
    loss = PerceptionLoss(
        encoder, **heads, grid=grid, depth_mean=0.5, depth_std=0.1,
        position_coeff=0.5, keypoint_coeff=2.0, orientation_coeff=3.0,
    )  # fmt: skip
    frames = torch.randn(b, grid * grid, 5)
    t = _targets(b, grid)
    out = loss(TensorDict({IMAGE_KEY: frames, TARGETS_KEY: t}, [b]))
    z = encoder(frames)
    ref = {
        "position": position_loss(heads["position_head"](z), t["position_z"], t["grasped"], t["phase"])[0],
        "keypoint": keypoint_loss(heads["keypoint_head"](z), t["keypoints"], grid, 0.5, 0.1)[0],
        "orientation": torch.nn.functional.mse_loss(heads["orientation_head"](z), t["orientation_z"]),
    }  # fmt: skip
    for name, coeff in (("position", 0.5), ("keypoint", 2.0), ("orientation", 3.0)):
        assert float(out[f"perception_{name}"]) == pytest.approx(float(ref[name].detach()))
        assert float(out[f"loss_perception_{name}"].detach()) == pytest.approx(
            coeff * float(ref[name].detach())
        )
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    assert all(p.grad is None for h in heads.values() for p in h.parameters())


def test_perception_loss_on_the_tiny_openvla_trains_the_towers():
    from vla_torchrl.modules import build_policy

    bundle = build_policy("tiny", lora=False, critic="none", text_tokenizer="builtin")
    model, processor = bundle.model, bundle.processor
    size = model.config.image_size
    images = torch.randint(0, 255, (2, size, size, 3), dtype=torch.uint8)
    z = model.embed_images(processor.image_processor(images))
    grid = int(round(z.shape[1] ** 0.5))
    assert grid * grid == z.shape[1]
    loss = PerceptionLoss(
        lambda x: model.embed_images(processor.image_processor(x)),
        position_head=PositionHead(z.shape[-1], z.shape[1]),
        keypoint_head=KeypointHead(z.shape[-1]),
        grid=grid,
        depth_mean=0.5,
        depth_std=0.1,
    )
    out = loss(TensorDict({IMAGE_KEY: images, TARGETS_KEY: _targets(2, grid)}, [2]))
    (out["loss_perception_position"] + out["loss_perception_keypoint"]).backward()
    towers = [p for n, p in model.named_parameters() if n.startswith("vision_backbone.")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in towers)
    llm = [p for n, p in model.named_parameters() if n.startswith("language_model.")]
    assert all(p.grad is None for p in llm)


def test_perception_loss_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="at least one head"):
        PerceptionLoss(torch.nn.Identity())
    with pytest.raises(ValueError, match="grid >= 1 and depth_std > 0"):
        PerceptionLoss(torch.nn.Identity(), keypoint_head=KeypointHead(8))
