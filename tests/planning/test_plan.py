"""vla-torchrl-plan: verdict, FSDP2 arithmetic, JSON output, overrides."""

from __future__ import annotations

import json

import pytest

from vla_torchrl.planning.advice import GIB, fits, fsdp2_per_gpu
from vla_torchrl.planning.memory import CATEGORIES, MemoryEstimate
from vla_torchrl.recipes.plan import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _estimate():
    update = dict.fromkeys(CATEGORIES, 0)
    update.update(frozen_weights=12 * GIB, activations=6 * GIB)
    rollout = dict.fromkeys(CATEGORIES, 0)
    rollout.update(frozen_weights=12 * GIB, activations=2 * GIB)
    return MemoryEstimate(
        update=update,
        rollout=rollout,
        sequence_length=10,
        parameters={},
        decoder={"frozen_weights": 8 * GIB, "trainable_weights": 0},
        largest_layer_bytes=GIB // 4,
    )


def test_fits_keeps_the_margin_free():
    assert fits(21.6 * GIB, 24.0)  # 90% of 24
    assert not fits(21.7 * GIB, 24.0)
    assert fits(23.9 * GIB, 24.0, margin=0.0)


def test_fsdp2_shards_the_decoder_layers_analytically():
    est = _estimate()
    # 8 GiB of decoder weights over 4 ranks: 6 GiB saved, minus 2 gathered layers (0.5 GiB)
    per_gpu = fsdp2_per_gpu(est, 4)
    assert per_gpu["update"] == 18 * GIB - (6 * GIB - GIB // 2)
    assert per_gpu["rollout"] == 14 * GIB - (6 * GIB - GIB // 2)
    assert fsdp2_per_gpu(est, 1)["update"] == 18 * GIB


def test_cli_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "plan.json"
    args = ["--config-name", "train_cpu", "--json", str(out), "--no-search", "gpu_memory=8"]
    args += ["env.num_envs=2", "optim.minibatch_size=2", "env.width=32", "env.height=32"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "frozen weights" in text and "FITS" in text
    result = json.loads(out.read_text())
    assert result["fits"] is True and result["gpu_memory_gib"] == 8.0
    update = result["estimate"]["update"]
    assert set(update) == set(CATEGORIES)
    assert result["config"]["minibatch_size"] == 2 and result["max_rss_gib"] < 4
    assert set(result["fsdp2"]) == {"2", "4", "8"}


def test_cli_suggests_settings_when_it_does_not_fit(capsys):
    # a card smaller than the weights: nothing fits, the search says so
    args = ["--config-name", "train_cpu", "--gpu-memory", "0.001", "--format", "json"]
    args += ["env.num_envs=2", "optim.minibatch_size=2", "env.width=32", "env.height=32"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fits"] is False and result["suggestions"] == []
    assert result["rollout_num_envs"] == 0


def test_verify_steps_counts_a_snapshot_of_the_trainable_weights_and_adamw_state():
    """optim.verify_steps copies every trainable tensor and its two AdamW moments before the
    step: with the weights dominating (minibatch 1, 16 px, full fine-tuning) the peak is the
    step, where the snapshot equals the trainable weights plus the optimizer state."""
    from vla_torchrl.planning.memory import estimate_memory

    kwargs = dict(
        model_source="tiny",
        policy_kwargs={"lora": False, "critic": "none", "text_tokenizer": "builtin"},
        loss="sft",
        minibatch_size=1,
        grad_accum_steps=1,
        num_envs=1,
        frame_hw=(16, 16),
    )
    plain = estimate_memory(**kwargs)
    checked = estimate_memory(**kwargs, verify_steps=True)
    assert plain.update["step_snapshot"] == 0 and checked.rollout["step_snapshot"] == 0
    expected = checked.update["trainable_weights"] + checked.update["optimizer_state"]
    assert checked.update["step_snapshot"] == pytest.approx(expected, rel=0.01)
    assert checked.update_peak >= plain.update_peak + 0.99 * expected
    assert checked.rollout_peak == plain.rollout_peak
    # FSDP2 shards the snapshot of the decoder's trainable weights too (3x of them)
    trainable = checked.decoder["trainable_weights"]
    saved = fsdp2_per_gpu(plain, 4)["update"] - plain.update_peak
    saved_checked = fsdp2_per_gpu(checked, 4)["update"] - checked.update_peak
    assert saved - saved_checked == pytest.approx(3 * trainable * 0.75, abs=2)


def _plan_parameters(tmp_path, name: str, overrides: list[str]) -> dict:
    out = tmp_path / f"{name}.json"
    args = ["--config-name", "train_cpu", "--json", str(out), "--no-search", "gpu_memory=8"]
    args += ["env.num_envs=2", "optim.minibatch_size=2", "env.width=32", "env.height=32"]
    assert main([*args, "algo=sft", *overrides]) == 0
    result = json.loads(out.read_text())
    return {**result["estimate"]["parameters"], "arch": result["config"]["arch"]}


def test_a_run_from_a_saved_policy_is_planned_with_that_policys_architecture(tmp_path):
    """``model.init_from`` builds the saved policy's architecture and fine-tuning mode, not the
    run's model group's: the plan must count that model (a 56 px fully fine-tuned source under
    the default 28 px LoRA group), as planning the source's settings directly does."""
    from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
    from vla_torchrl.training.policy import build_policy_from_config, save_policy

    source_model = ModelConfig(
        name="tiny", finetune="full", dtype="float32", arch={"image_size": 56}
    )
    algo = AlgoConfig(name="sft", critic="none")
    source = save_policy(
        build_policy_from_config(source_model, algo), tmp_path / "src", source_model, algo
    )
    direct = _plan_parameters(
        tmp_path,
        "direct",
        ["model.finetune=full", "model.dtype=float32", "model.arch.image_size=56"],
    )
    group = _plan_parameters(tmp_path, "group", [])
    from_source = _plan_parameters(tmp_path, "from", [f"model.init_from={source}"])
    assert from_source == direct and from_source["arch"] == {"image_size": 56}
    assert from_source["trainable"] > 10 * group["trainable"]  # full fine-tuning, not LoRA


def test_model_small_is_planned_as_the_small_model_with_its_arch_overrides(tmp_path):
    """``model=small`` (and ``model.arch.*``) is the model the plan counts: its trainable
    parameters equal those of the model a run builds (the planner once counted the tiny one)."""
    from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
    from vla_torchrl.training.policy import build_policy_from_config

    res96 = {"image_size": 96, "dino": {"patch_size": 12}, "siglip": {"patch_size": 12}}
    for arch in ({}, res96):
        overrides = ["model=small"]
        if arch:
            overrides += ["model.arch.image_size=96", "+model.arch.dino={patch_size:12}"]
            overrides += ["+model.arch.siglip={patch_size:12}"]
        planned = _plan_parameters(tmp_path, f"small{len(arch)}", overrides)
        built = build_policy_from_config(
            ModelConfig(name="small", finetune="full", dtype="float32", arch=arch),
            AlgoConfig(name="sft", critic="none"),
        )
        trainable = sum(p.numel() for p in built.model.parameters() if p.requires_grad)
        assert planned["trainable"] == trainable and planned["arch"] == arch
