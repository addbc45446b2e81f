"""Vision pretraining on privileged frames (training/vision_pretraining.py) and its command
line, ``vla-torchrl-pretrain-vision``."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.config.cli_schema import PretrainVisionConfig
from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
from vla_torchrl.envs.demos import held_out_episodes, save_demos
from vla_torchrl.errors import ConfigError, UserError
from vla_torchrl.keys import EPISODE_ID_KEY, IMAGE_KEY, PRIVILEGED_KEY
from vla_torchrl.recipes import pretrain_vision as recipe
from vla_torchrl.training.perception_anchor import load_perception_heads
from vla_torchrl.training.policy import build_policy_from_config, load_policy
from vla_torchrl.training.vision_pretraining import (
    HEADS_FILE,
    _minibatch,
    perception_data,
    pretrain_vision,
)

QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]
TINY = {"name": "tiny", "finetune": "full", "dtype": "float32"}
EPISODES, STEPS_PER_EPISODE, SIZE = 24, 8, 16


def _frames(seed: int = 0) -> TensorDict:
    """Frames whose colour says where two of the points are: red = the object's x, green = the
    gripper's y (both uniform over their range); blue is noise and the receptacle is nowhere in
    the image."""
    n = EPISODES * STEPS_PER_EPISODE
    g = torch.Generator().manual_seed(seed)

    def point():
        return torch.stack(
            [0.2 + 0.2 * torch.rand(n, generator=g), 0.2 * torch.rand(n, generator=g) - 0.1,
             0.05 * torch.rand(n, generator=g)], -1)  # fmt: skip

    tcp, obj, receptacle = point(), point(), point()
    images = torch.zeros(n, SIZE, SIZE, 3)
    images[..., 0] = ((obj[:, 0] - 0.2) / 0.2)[:, None, None]
    images[..., 1] = ((tcp[:, 1] + 0.1) / 0.2)[:, None, None]
    images[..., 2] = torch.rand(n, SIZE, SIZE, generator=g)
    state = TensorDict(
        {
            "tcp_position": tcp,
            "object_position": obj,
            "receptacle_position": receptacle,
            "is_grasped": torch.rand(n, generator=g) > 0.5,
            "expert_phase": torch.randint(0, 8, (n,), generator=g),
            "tcp_rotation": torch.eye(3).expand(n, 3, 3).clone(),
            "object_yaw": torch.rand(n, generator=g),
        },
        [n],
    )
    return TensorDict(
        {
            IMAGE_KEY: (images * 255).round().to(torch.uint8),
            PRIVILEGED_KEY: state,
            EPISODE_ID_KEY: torch.arange(EPISODES).repeat_interleave(STEPS_PER_EPISODE),
        },
        [n],
    )


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    return str(save_demos(_frames(), tmp_path_factory.mktemp("pv") / "demos"))


def _cfg(demos: str, out, **kw) -> PretrainVisionConfig:
    values = dict(
        demos=[demos], out=str(out), model=ModelConfig(**TINY), steps=200, batch_size=32,
        lr=3e-3, warmup_steps=10, eval_every=200, keypoint_coef=0.0, orientation_coef=0.0,
        val_fraction=0.25, progress_bar=False,
    )  # fmt: skip
    values.update(kw)
    return PretrainVisionConfig(**values)


def _evals(out) -> list[dict]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "eval"]


def test_held_out_episodes_are_whole_and_disjoint():
    ids = torch.arange(10).repeat_interleave(3)
    train, held = held_out_episodes(ids, 0.2, seed=1)
    assert len(held) == 6 and len(train) == 24  # 2 of 10 episodes, 3 frames each
    assert set(ids[held].tolist()).isdisjoint(ids[train].tolist())
    assert sorted(train.tolist() + held.tolist()) == list(range(30))
    assert len(held_out_episodes(ids, 0.0)[1]) == 0


def test_targets_are_standardized_over_the_training_split(demos):
    data = perception_data([demos], val_fraction=0.25)
    z = data.frames.get(("perception_targets", "position_z"))[data.train]
    torch.testing.assert_close(z.mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(12), atol=1e-4, rtol=0)
    assert len(data.held) == 6 * STEPS_PER_EPISODE  # a quarter of 24 episodes


def test_scene_frames_only_train_and_leave_the_held_out_split_as_it_was(demos, tmp_path):
    """``scene_frames`` join the training split (and its statistics) and nothing else: the
    held-out frames are the same demo episodes as without them."""
    scenes = _frames(seed=1)[:40]  # other placements; their episode ids are ignored
    folder = str(save_demos(scenes, tmp_path / "scenes"))
    plain = perception_data([demos], val_fraction=0.25)
    mixed = perception_data([demos], val_fraction=0.25, scene_frames=[folder])
    n = EPISODES * STEPS_PER_EPISODE
    assert torch.equal(mixed.held, plain.held) and mixed.scene_frames == 40
    assert mixed.train.tolist() == plain.train.tolist() + list(range(n, n + 40))
    demo_state = _frames()[PRIVILEGED_KEY]
    tcp = torch.cat(
        [demo_state["tcp_position"][plain.train], scenes[PRIVILEGED_KEY]["tcp_position"]]
    )
    torch.testing.assert_close(mixed.stats["mean"][:3], tcp.mean(0))
    torch.testing.assert_close(mixed.stats["std"][:3], tcp.std(0))
    torch.testing.assert_close(mixed.frames[IMAGE_KEY][n:], scenes[IMAGE_KEY])
    # the command line's setting reaches the data, and the log says how many frames it added
    out = pretrain_vision(
        _cfg(demos, tmp_path / "pv", steps=2, eval_every=2, scene_frames=[folder])
    )
    data_line = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert data_line["event"] == "data" and data_line["scene_frames"] == 40
    assert data_line["scene_share"] == round(40 / (len(plain.train) + 40), 4)  # uniform draw
    assert data_line["train"] == len(plain.train) + 40 and data_line["held_out"] == len(plain.held)
    small = _frames()[:16]
    small.set(IMAGE_KEY, small[IMAGE_KEY][:, :8, :8])
    other = str(save_demos(small, tmp_path / "small"))
    with pytest.raises(UserError, match="collect both with the same env.width / env.height"):
        perception_data([demos], val_fraction=0.25, scene_frames=[other])


def test_scene_share_sets_how_many_frames_of_each_minibatch_are_scene_frames(demos, tmp_path):
    """With ``scene_share`` a minibatch holds ``round(share * batch)`` scene frames and the rest
    demo frames, at every step; without it the draw is uniform over all training frames, so
    the scene frames' share of many minibatches is their share of the training split. The
    scene frames are told apart by their gripper, far outside the demos' workspace."""
    scenes = _frames(seed=1)[:40]
    scenes[PRIVILEGED_KEY]["tcp_position"][:, 0] = 5.0
    folder = str(save_demos(scenes, tmp_path / "scenes"))
    data = perception_data([demos], val_fraction=0.25, scene_frames=[folder])
    key = ("perception_targets", "position_z")
    threshold = data.frames.get(key)[data.train, 0].mean()  # between the two groups

    def scene_count(cfg, step):
        return int((_minibatch(data, cfg, step).get(key)[:, 0] > threshold).sum())

    shared = _cfg(demos, tmp_path, scene_frames=[folder], scene_share=0.25, batch_size=32)
    assert [scene_count(shared, step) for step in range(20)] == [8] * 20
    uniform = _cfg(demos, tmp_path, scene_frames=[folder], batch_size=32)
    counts = [scene_count(uniform, step) for step in range(200)]
    share = 40 / len(data.train)  # 40 of 184 training frames
    assert abs(sum(counts) / (200 * 32) - share) < 0.03 and len(set(counts)) > 3
    only = _cfg(demos, tmp_path, scene_frames=[folder], scene_share=1.0, batch_size=32)
    assert scene_count(only, 0) == 32
    with pytest.raises(ConfigError, match="scene_share=1.5 must be in \\[0, 1\\]"):
        _cfg(demos, tmp_path, scene_frames=[folder], scene_share=1.5)
    with pytest.raises(ConfigError, match="scene_share=0.2 needs scene_frames"):
        _cfg(demos, tmp_path, scene_share=0.2)


@pytest.mark.slow
def test_the_towers_learn_what_the_frames_show_and_only_that(demos, tmp_path):
    """Held out, the object's x and the gripper's y (in the frames' colour) fall well below the
    predict-the-mean error; the receptacle (in no frame) stays near it."""
    out = pretrain_vision(_cfg(demos, tmp_path / "pv"))
    first, last = _evals(out)
    base, err = last["baseline_rmse_cm"], last["position_rmse_cm"]
    assert first["step"] == 0 and last["step"] == 200
    assert err[3] < 0.4 * base[3], ("object x", err[3], base[3])
    assert err[1] < 0.4 * base[1], ("gripper y", err[1], base[1])
    assert err[6] > 0.7 * base[6], ("receptacle x", err[6], base[6])


@pytest.mark.slow
def test_outputs_feed_sft_and_the_anchor_and_a_rerun_resumes(demos, tmp_path):
    """``policy/`` reloads with the trained towers, ``heads.pt`` reads back through
    ``load_perception_heads``, and a run stopped at step 10 and rerun to 20 ends with the
    weights of an uninterrupted 20-step run."""
    kw = dict(steps=20, eval_every=10, keypoint_coef=1.0, orientation_coef=1.0)
    whole = pretrain_vision(_cfg(demos, tmp_path / "whole", **kw))
    pretrain_vision(_cfg(demos, tmp_path / "split", **{**kw, "steps": 10}))
    split = pretrain_vision(_cfg(demos, tmp_path / "split", **kw))
    a, b = load_policy(whole / "policy").model, load_policy(split / "policy").model
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    # the towers moved from the random start, the language model did not
    fresh = build_policy_from_config(ModelConfig(**TINY), AlgoConfig(name="sft", critic="none"))
    trained = a.state_dict()
    changed = [k for k, v in fresh.model.state_dict().items() if not torch.equal(v, trained[k])]
    moved = [k for k in changed if k.startswith("vision_backbone.")]
    llm_changed = [k for k in changed if k.startswith("language_model.")]
    assert moved and not llm_changed
    heads, stats = load_perception_heads(whole / HEADS_FILE, a.config.llm_hidden_size)
    assert sorted(heads) == ["keypoint_head", "orientation_head", "position_head"]
    saved = torch.load(whole / "checkpoint.pt", weights_only=True)
    for name, head in heads.items():
        for k, v in head.state_dict().items():
            assert torch.equal(v, saved["heads"][name][k]), (name, k)
    assert {"mean", "std", "depth_mean", "depth_std", "orient_mean", "orient_std"} <= set(stats)
    last = _evals(whole)[-1]
    assert len(last["keypoint_rmse_cm"]) == 12 and len(last["keypoint_px_rmse"]) == 3
    assert last["yaw_err_deg_median"] >= 0


def test_bad_settings_are_refused_with_what_to_do(demos, tmp_path):
    with pytest.raises(ConfigError, match="demos=\\[\\] is empty"):
        PretrainVisionConfig(demos=[], out="x")
    with pytest.raises(ConfigError, match="every \\*_coef is 0"):
        _cfg(demos, tmp_path, position_coef=0.0)
    with pytest.raises(ConfigError, match="model.freeze_vision=true freezes the towers"):
        _cfg(demos, tmp_path, model=ModelConfig(**TINY, freeze_vision=True))
    with pytest.raises(UserError, match="batch_size=1000 is larger than the training split"):
        pretrain_vision(_cfg(demos, tmp_path / "big", batch_size=1000))
    plain = _frames().exclude(PRIVILEGED_KEY)
    folder = save_demos(plain, tmp_path / "plain")
    with pytest.raises(UserError, match="collect them with vla-torchrl-collect privileged=true"):
        pretrain_vision(_cfg(str(folder), tmp_path / "plain-out"))


def test_command_line_writes_the_outputs_and_refuses_bad_overrides(demos, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [f"demos=[{demos}]", f"out={out}", "model=tiny", "steps=4", "batch_size=8"]
    argv += ["eval_every=4", "keypoint_coef=0", "orientation_coef=0", "progress_bar=false"]
    assert recipe.main([*argv, *QUIET]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["policy"] == str(out / "policy") and summary["held_out"]["step"] == 4
    assert load_policy(out / "policy").model.config.image_size == 28
    assert recipe.main([*argv, "steps=0", *QUIET]) == 2
    assert "steps=0 must be >= 1" in capsys.readouterr().err
