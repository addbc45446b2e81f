"""PPO with the perception anchor (training/perception_anchor.py) through ``vla-torchrl-train``, and its
targets from the privileged state."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

from tests.helpers import SMALL_TRAIN as SMALL
from vla_torchrl.envs.demos import save_demos
from vla_torchrl.envs.toy import toy_oracle_demos
from vla_torchrl.errors import UserError
from vla_torchrl.keys import PRIVILEGED_KEY
from vla_torchrl.objectives.perception import KeypointHead, OrientationHead, PositionHead
from vla_torchrl.recipes import train as train_module
from vla_torchrl.training.perception_anchor import (
    keypoint_targets,
    load_perception_heads,
    perception_targets,
)
from vla_torchrl.training.policy import load_policy

QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none", "hydra.output_subdir=null"]
TARGET = "vla_torchrl.training.perception_anchor.PPOWithPerceptionLoss"


def _privileged(n: int, seed: int = 0) -> TensorDict:
    """Plausible labels: points 0.2-0.4 m in front of the robot base, on the table."""
    g = torch.Generator().manual_seed(seed)

    def point():
        return torch.stack(
            [0.2 + 0.2 * torch.rand(n, generator=g), 0.2 * torch.rand(n, generator=g) - 0.1,
             0.05 * torch.rand(n, generator=g)], -1)  # fmt: skip

    return TensorDict(
        {
            "tcp_position": point(),
            "object_position": point(),
            "receptacle_position": point(),
            "is_grasped": torch.rand(n, generator=g) > 0.5,
            "expert_phase": torch.randint(0, 8, (n,), generator=g),
            "tcp_rotation": torch.eye(3).expand(n, 3, 3).clone(),
            "object_yaw": torch.rand(n, generator=g),
        },
        [n],
    )


def _stats() -> dict:
    return {
        "mean": torch.full((12,), 0.1),
        "std": torch.full((12,), 0.2),
        "depth_mean": 0.5,
        "depth_std": 0.1,
        "orient_mean": torch.zeros(11),
        "orient_std": torch.full((11,), 2.0),
    }


def test_targets_are_the_standardized_labels():
    state = _privileged(5)
    t = perception_targets(state, _stats(), image_hw=(16, 16))
    tcp, obj = state["tcp_position"], state["object_position"]
    torch.testing.assert_close(t["position_z"][:, :3], (tcp - 0.1) / 0.2)
    torch.testing.assert_close(t["position_z"][:, 9:], (tcp - obj - 0.1) / 0.2)
    assert torch.equal(t["grasped"], state["is_grasped"]) and torch.equal(
        t["phase"], state["expert_phase"]
    )
    # orientation: identity rotation and (cos 2y, sin 2y), halved by the std of 2
    torch.testing.assert_close(t["orientation_z"][:, :9], torch.eye(3).flatten().expand(5, 9) / 2)
    yaw = state["object_yaw"]
    torch.testing.assert_close(t["orientation_z"][:, 9], torch.cos(2 * yaw) / 2)
    # keypoints: in front of the camera, and a point 0.5 m along the optical axis lands on the
    # principal point of the 640 x 480 calibration scaled to 96 px (cx 319.501, cy 239.545),
    # pixel centres at +0.5 in normalized units, 0.5 m deep
    kp = keypoint_targets(state, 16, 16)
    assert torch.equal(t["keypoints"], kp) and bool((kp[..., 2] > 0).all())
    assert "keypoints" not in perception_targets(state, _stats()).keys()  # noqa: SIM118
    from vla_torchrl.envs.maniskill.scene import _CAMERA_IN_BASE

    axis = torch.as_tensor(_CAMERA_IN_BASE.to_transformation_matrix()[:3, 0])
    ahead = torch.as_tensor(_CAMERA_IN_BASE.p) + 0.5 * axis
    state.set("tcp_position", ahead.float().expand(5, 3).clone())
    x, y, depth = keypoint_targets(state, 96, 96)[0, 0].tolist()
    expected = ((319.501 * 96 / 640 + 0.5) / 96, (239.545 * 96 / 480 + 0.5) / 96, 0.5)
    assert (x, y, depth) == pytest.approx(expected, abs=1e-4)


def test_heads_file_errors_say_what_to_pass(tmp_path):
    with pytest.raises(UserError, match="does not exist; pass the head.pt"):
        load_perception_heads(tmp_path / "missing.pt", 8)
    torch.save({"mean": torch.zeros(12)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a perception head.pt"):
        load_perception_heads(tmp_path / "other.pt", 8)


def _head_file(path, hidden: int, patches: int):
    torch.manual_seed(0)
    torch.save(
        {
            "head": PositionHead(hidden, patches).state_dict(),
            "keypoint_head": KeypointHead(hidden).state_dict(),
            "orientation_head": OrientationHead(hidden, patches).state_dict(),
            **_stats(),
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def privileged_demos(tmp_path_factory):
    demos = toy_oracle_demos(4, seed=3, image_size=16, max_steps=4)
    demos.set(PRIVILEGED_KEY, _privileged(demos.shape[0]))
    path = tmp_path_factory.mktemp("demos") / "toy-privileged"
    save_demos(demos, path)
    return path


@pytest.mark.slow
def test_ppo_with_perception_trains_the_towers_through_the_recipe(
    tmp_path, privileged_demos, capsys
):
    """The recipe builds the loss from ``algo.loss``; its perception terms are logged; the vision
    towers train (``model.freeze_vision=false``) while the frozen heads are no trainable
    parameter (the recipe would refuse one its optimizer does not hold)."""
    from vla_torchrl.modules import build_policy

    tiny = build_policy("tiny", lora=False, critic="none", text_tokenizer="builtin")
    size = tiny.model.config.image_size
    with torch.no_grad():
        z = tiny.model.embed_images(
            tiny.processor.image_processor(torch.zeros(1, size, size, 3, dtype=torch.uint8))
        )
    heads = _head_file(tmp_path / "head.pt", z.shape[-1], z.shape[1])
    run = tmp_path / "run"
    argv = ["--config-name", "train_cpu", *SMALL, f"run_dir={run}", *QUIET]
    argv += ["collector.total_env_steps=32", "model.finetune=full", "optim.lr=3e-3", "seed=0"]
    argv += [f"algo.loss._target_={TARGET}", f"+algo.loss.demos=[{privileged_demos}]"]
    argv += [f"+algo.loss.heads={heads}", "+algo.loss.perception_batch_size=4"]
    assert train_module.main(argv) == 0
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for name in ("position", "keypoint", "orientation"):
        values = [r[f"losses/perception_{name}"] for r in records if "train/iteration" in r]
        assert values and all(v == v and v > 0 for v in values), name
    trained = load_policy(run / "policy").model.state_dict()
    start = build_policy("tiny", lora=False, critic="none", text_tokenizer="builtin")
    moved = [
        k
        for k, v in start.model.state_dict().items()
        if k.startswith("vision_backbone.") and not torch.equal(v, trained[k])
    ]
    assert moved, "the towers did not train"
    # heads for another patch grid: refused in one line before training
    _head_file(tmp_path / "bad.pt", z.shape[-1], z.shape[1] + 5)
    bad = [a.replace(str(heads), str(tmp_path / "bad.pt")) for a in argv]
    bad = [a.replace(f"run_dir={run}", f"run_dir={tmp_path / 'bad'}") for a in bad]
    assert train_module.main(bad) == 2
    # frozen towers: nothing for the anchor to train, refused in one line
    frozen = [a.replace(f"run_dir={run}", f"run_dir={tmp_path / 'frozen'}") for a in argv]
    assert train_module.main([*frozen, "model.freeze_vision=true"]) == 2
    assert "model.freeze_vision=true): set model.freeze_vision=false" in capsys.readouterr().err


@pytest.mark.slow
def test_sft_from_several_demo_sets_keeps_the_perception_terms(tmp_path, privileged_demos):
    """``algo.demos`` takes a list of sets (concatenated: the action statistics count every
    step of both) and SFT with ``WithPerceptionLoss`` logs its perception terms while the
    towers train."""
    from vla_torchrl.envs.demos import load_demos

    second = toy_oracle_demos(3, seed=5, image_size=16, max_steps=4)
    second.set(PRIVILEGED_KEY, _privileged(second.shape[0], seed=1))
    other = save_demos(second, tmp_path / "second")
    from vla_torchrl.modules.config import OpenVLAConfig

    tiny = OpenVLAConfig.tiny()  # the heads read its projected patches: 4 x 4 of llm width
    patches = (tiny.image_size // tiny.dino.patch_size) ** 2
    heads = _head_file(tmp_path / "heads.pt", tiny.llm_hidden_size, patches)
    run = tmp_path / "sft"
    sets = f"[{privileged_demos},{other}]"
    argv = ["--config-name", "train_cpu", *SMALL, f"run_dir={run}", *QUIET, "algo=sft"]
    argv += [f"algo.demos={sets}", "algo.epochs=2", "model.finetune=full", "seed=0"]
    argv += ["algo.loss._target_=vla_torchrl.training.perception_anchor.WithPerceptionLoss"]
    argv += [f"+algo.loss.demos={sets}", f"+algo.loss.heads={heads}"]
    argv += ["+algo.loss.perception_batch_size=4", "+algo.loss.perception_coeff=1.0"]
    assert train_module.main(argv) == 0
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/iteration"] for r in records] == [1, 2]
    for name in ("sft", "perception_position", "perception_keypoint", "perception_orientation"):
        assert all(r[f"losses/loss_{name}"] > 0 for r in records), name
    spec = json.loads((run / "policy" / "policy.json").read_text())
    steps = load_demos(privileged_demos).shape[0] + second.shape[0]
    assert spec["norm_stats"]["demos"]["num_transitions"] == steps


def test_without_gradient_only_the_algorithm_terms_and_no_draw_from_the_global_rng(
    tmp_path, privileged_demos
):
    """The perception terms are a training signal: scored without gradient (SFT's held-out loss)
    the loss gives the algorithm's terms alone, equal to the stock loss's, and leaves torch's
    global RNG where it was (so how often a run evaluates cannot change its training draws)."""
    from vla_torchrl.config.train_schema import AlgoConfig
    from vla_torchrl.envs.demos import load_demos
    from vla_torchrl.keys import ACTION_KEY, ACTION_TOKENS_KEY
    from vla_torchrl.modules import build_policy
    from vla_torchrl.training.perception_anchor import WithPerceptionLoss

    torch.manual_seed(0)
    bundle = build_policy("tiny", lora=False, critic="none", text_tokenizer="builtin")
    config = bundle.model.config
    patches = (config.image_size // config.dino.patch_size) ** 2
    heads = _head_file(tmp_path / "heads.pt", config.llm_hidden_size, patches)
    loss = WithPerceptionLoss(
        bundle.evaluator,
        algo=AlgoConfig(name="sft", critic="none"),
        demos=[privileged_demos],
        heads=heads,
        perception_batch_size=4,
    )
    batch = load_demos(privileged_demos)[:4]
    actions = batch.get(ACTION_KEY)
    batch.set(ACTION_TOKENS_KEY, bundle.processor.action_tokenizer.actions_to_tokens(actions))
    trained = loss(batch)
    assert {"loss_sft", "loss_perception_position"} <= set(trained.keys())
    state = torch.get_rng_state()
    with torch.no_grad():
        scored = loss(batch)
    assert torch.equal(torch.get_rng_state(), state)
    names = list(scored.keys())  # a TensorDict iterates over its batch dimension
    assert "loss_sft" in names and not any(k.startswith("loss_perception") for k in names)
    with torch.no_grad():
        stock = loss.base(batch)
    assert torch.equal(scored["loss_sft"], stock["loss_sft"])
