"""Loading checks (issue 17): dtypes and finite values of resumed checkpoints and saved policies."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
from vla_torchrl.errors import UserError
from vla_torchrl.training.checkpointing import CheckpointError, check_tensors
from vla_torchrl.training.policy import (
    TRAINABLE_FILE,
    build_policy_from_config,
    load_policy,
    save_policy,
)


@pytest.mark.parametrize(
    ("saved", "needle"),
    [
        (torch.zeros(2, 3, dtype=torch.float16), "tensor w is float16, the model expects float32"),
        (torch.zeros(2, 3, dtype=torch.int64), "tensor w is int64, the model expects float32"),
        (torch.tensor([[0.0, float("nan"), 0.0]] * 2), "tensor w holds NaN or inf"),
        (torch.tensor([[0.0, float("inf"), 0.0]] * 2), "tensor w holds NaN or inf"),
    ],
)
def test_resumed_tensors_keep_dtype_and_are_finite(saved, needle):
    with pytest.raises(CheckpointError, match=needle) as info:
        check_tensors({"w": saved}, {"w": torch.zeros(2, 3)}, where="checkpoint X")
    assert str(info.value).startswith("checkpoint X: ") and "\n" not in str(info.value)
    check_tensors({"w": torch.ones(2, 3)}, {"w": torch.zeros(2, 3)}, where="X")  # fine


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    path = tmp_path_factory.mktemp("policy")
    return save_policy(build_policy_from_config(model, algo), path, model, algo)


def _copy_with(policy_dir, tmp_path, change):
    import shutil

    target = tmp_path / "policy"
    shutil.copytree(policy_dir, target)
    state = load_file(str(target / TRAINABLE_FILE))
    name = sorted(state)[0]
    state[name] = change(state[name])
    save_file(state, str(target / TRAINABLE_FILE), metadata={"format": "pt"})
    return target, name


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: t.to(torch.int64), "is int64, the model expects float32"),
        (lambda t: t.to(torch.float16), "is float16, the model expects float32"),
        (lambda t: torch.full_like(t, float("nan")), "holds NaN or inf values"),
    ],
)
def test_policy_load_refuses_other_dtypes_and_nan(policy_dir, tmp_path, change, needle):
    target, name = _copy_with(policy_dir, tmp_path, change)
    with pytest.raises(UserError) as info:
        load_policy(target)
    message = str(info.value)
    assert needle in message and str(target / TRAINABLE_FILE) in message and name in message
    assert "\n" not in message
    load_policy(policy_dir)  # the untouched policy still loads


# ----------------------------------------------------------- disk full, atomic policy save


def test_disk_full_during_checkpoint_save_says_so(tmp_path, monkeypatch):
    import errno
    import shutil

    from vla_torchrl.training import checkpointing
    from vla_torchrl.training.checkpointing import CheckpointManager

    manager = CheckpointManager(tmp_path, keep_last=3)
    good = manager.save(1, tensors={"w": torch.ones(2)})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointing, "save_file", full)
    with pytest.raises(CheckpointError, match=f"disk full at {manager.root}: checkpoint step 2"):
        manager.save(2, tensors={"w": torch.ones(2)})
    # torch.save's zip writer on a full disk: RuntimeError "unexpected pos", no errno
    monkeypatch.undo()

    def zip_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 32")

    monkeypatch.setattr(checkpointing.torch, "save", zip_full)
    monkeypatch.setattr(
        checkpointing.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 0)
    )
    with pytest.raises(CheckpointError, match="disk full at"):
        manager.save(3, tensors={"w": torch.ones(2)})
    monkeypatch.undo()
    assert manager.checkpoints() == [good] and manager.latest() == good
    assert [p.name for p in manager.root.iterdir()] == [good.name]  # no temp left


def test_policy_save_is_atomic_and_disk_full_is_named(policy_dir, tmp_path, monkeypatch):
    import errno
    import shutil

    from safetensors import torch as st

    target = tmp_path / "policy"
    shutil.copytree(policy_dir, target)
    before = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    bundle = build_policy_from_config(model, algo)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(st, "save_file", full)
    with pytest.raises(UserError, match=f"disk full at {tmp_path}: the policy {target}"):
        save_policy(bundle, target, model, algo)
    after = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before  # the previous policy, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]


def test_policy_folders_are_byte_reproducible(tmp_path):
    """Two processes (other string hashing) save the same policy: the same bytes, incl. peft's
    adapter_config.json (target_modules was written in set order)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig\n"
        "from vla_torchrl.training.policy import build_policy_from_config, save_policy\n"
        "m, a = ModelConfig(name='tiny', lora_rank=2, dtype='float32'), AlgoConfig(name='ppo')\n"
        "save_policy(build_policy_from_config(m, a), sys.argv[1], m, a)\n"
    )
    for name, seed in (("a", "1"), ("b", "2")):
        env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True, env=env)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    assert any(p.name == "adapter_config.json" for p in files)
    for rel in files:
        if (tmp_path / "a" / rel).is_file():
            a, b = (tmp_path / "a" / rel).read_bytes(), (tmp_path / "b" / rel).read_bytes()
            assert a == b, rel


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("critic", 123, "critic is 123, expected a string"),
        ("base_checkpoint", 5, "base_checkpoint is 5, expected a string"),
        ("norm_stats", [1], "norm_stats is [1], expected a mapping or null"),
        ("model", {"name": "tiny", "lora_rank": -1}, "lora_rank"),
    ],
)
def test_policy_json_types_are_one_line_naming_the_file(policy_dir, tmp_path, field, value, needle):
    import json
    import shutil

    target = tmp_path / "policy"
    shutil.copytree(policy_dir, target)
    spec = json.loads((target / "policy.json").read_text())
    spec[field] = value
    (target / "policy.json").write_text(json.dumps(spec))
    with pytest.raises(UserError) as info:
        load_policy(target)
    message = str(info.value)
    assert needle in message and str(target / "policy.json") in message and "\n" not in message


def test_a_policy_started_from_another_reloads_with_the_critic_it_trained(tmp_path):
    """PPO from an SFT policy (no critic) attaches a fresh value head with the run's sizes, and
    the policy it saves reloads (issue 14: the head was built with the SFT policy's sizes,
    512 x 128, the run saved its own, 128 x 64, and the PPO policy could not be loaded)."""
    sft_model = ModelConfig(name="tiny", finetune="full", dtype="float32")  # value head 512, 128
    sft_algo = AlgoConfig(name="sft", critic="none")
    sft = save_policy(
        build_policy_from_config(sft_model, sft_algo), tmp_path / "sft", sft_model, sft_algo
    )
    run_model = ModelConfig(
        name="tiny",
        finetune="full",
        dtype="float32",
        value_head_hidden=[32, 16],
        init_from=str(sft),
    )
    ppo_algo = AlgoConfig(name="ppo")  # shared_h0
    ppo = build_policy_from_config(run_model, ppo_algo)
    assert ppo.critic.hidden == (32, 16)  # the run's sizes, not the SFT policy's
    with torch.no_grad():
        for p in ppo.critic.parameters():
            p.add_(0.1)
    ppo_dir = save_policy(ppo, tmp_path / "ppo", run_model, ppo_algo)
    back = load_policy(ppo_dir)
    assert torch.equal(back.critic.net[0].weight, ppo.critic.net[0].weight)
    # a run from the PPO policy whose config names other sizes keeps the trained head, and
    # what it saves records the head's real sizes
    again_model = dataclasses.replace(run_model, value_head_hidden=[8, 4], init_from=str(ppo_dir))
    again = build_policy_from_config(again_model, ppo_algo)
    assert again.critic.hidden == (32, 16)
    third = load_policy(save_policy(again, tmp_path / "again", again_model, ppo_algo))
    assert torch.equal(third.critic.net[2].weight, ppo.critic.net[2].weight)


def test_a_run_with_frozen_vision_saves_the_towers_it_started_from(tmp_path):
    """``model.freeze_vision``: PPO after SFT keeps the SFT towers; they are out of the optimizer
    but still in the saved policy, which reloads them exactly (not the seeded random init)."""
    sft_model = ModelConfig(name="tiny", finetune="full", dtype="float32")
    sft_algo = AlgoConfig(name="sft", critic="none")
    sft_bundle = build_policy_from_config(sft_model, sft_algo)
    with torch.no_grad():  # stands in for SFT: towers and projector differ from the seeded init
        for p in [
            *sft_bundle.model.vision_backbone.parameters(),
            *sft_bundle.model.projector.parameters(),
        ]:
            p.add_(0.05)
    sft = save_policy(sft_bundle, tmp_path / "sft", sft_model, sft_algo)
    run_model = ModelConfig(
        name="tiny", finetune="full", dtype="float32", freeze_vision=True, init_from=str(sft)
    )
    ppo_algo = AlgoConfig(name="ppo")
    ppo = build_policy_from_config(run_model, ppo_algo)
    assert ppo.model.vision_frozen
    in_optimizer = {id(p) for g in ppo.param_groups for p in g["params"]}
    vision = [*ppo.model.vision_backbone.parameters(), *ppo.model.projector.parameters()]
    assert not any(id(p) in in_optimizer for p in vision)
    assert any(id(p) in in_optimizer for p in ppo.model.language_model.parameters())
    back = load_policy(save_policy(ppo, tmp_path / "ppo", run_model, ppo_algo))
    for name, p in sft_bundle.model.named_parameters():
        if name.startswith(("vision_backbone.", "projector.")):
            assert torch.equal(back.model.state_dict()[name], p), name


def test_a_frozen_token_embedding_keeps_its_weights_through_training_and_saving(tmp_path):
    """``model.freeze_token_embedding``: an AdamW step on the run's ``param_groups`` moves the
    untied ``lm_head`` and leaves the token embedding exactly as it started, without gradient;
    the saved policy still holds it. Without the option the same step moves the embedding rows the prompt used."""
    config = dict(name="tiny", finetune="full", dtype="float32")
    algo = AlgoConfig(name="sft", critic="none")

    def one_step(model_config):
        torch.manual_seed(0)
        bundle = build_policy_from_config(model_config, algo)
        model = bundle.model
        size = model.config.image_size
        pixels = torch.rand(2, 6, size, size)
        ids = torch.tensor([[1, 306, 4966, 29889], [1, 263, 4802, 7375]])
        embedding = model.language_model.get_input_embeddings().weight
        head = model.language_model.lm_head.weight
        before = embedding.detach().clone(), head.detach().clone()
        optimizer = torch.optim.AdamW(bundle.param_groups, weight_decay=0.1)
        model(pixels, ids, torch.ones_like(ids)).logsumexp(-1).mean().backward()
        optimizer.step()
        return bundle, before, (embedding.detach(), head.detach()), ids

    frozen_config = ModelConfig(**config, freeze_token_embedding=True)
    bundle, (emb0, head0), (emb1, head1), ids = one_step(frozen_config)
    assert torch.equal(emb1, emb0)
    # no gradient either: one left there would never be zeroed and would grow in the clip norm
    assert bundle.model.language_model.get_input_embeddings().weight.grad is None
    assert not torch.equal(head1, head0)
    back = load_policy(save_policy(bundle, tmp_path / "frozen", frozen_config, algo))
    assert torch.equal(back.model.language_model.get_input_embeddings().weight, emb0)
    _, (emb0, _), (emb1, _), ids = one_step(ModelConfig(**config))
    moved = (emb1 - emb0).abs().sum(-1) > 0
    assert moved[ids.flatten()].all()  # the reference: the same step trains the used rows


def test_freeze_token_embedding_must_be_a_boolean():
    with pytest.raises(UserError, match="model.freeze_token_embedding='yes' must be true or false"):
        ModelConfig(name="tiny", freeze_token_embedding="yes")


def test_a_run_from_a_resized_policy_saves_that_architecture_and_refuses_another(tmp_path):
    """A run from a saved policy rebuilds that policy's architecture, whatever its own model
    group says; the policy it saves must record that architecture (issue 14: SFT from a
    pretraining run at 96 px saved the run's default 64 px ``arch`` and could not be reloaded).
    An explicit ``model.arch`` that disagrees with the source is refused, not ignored."""
    source_model = ModelConfig(
        name="tiny", finetune="full", dtype="float32", arch={"image_size": 56}
    )
    algo = AlgoConfig(name="sft", critic="none")
    source_bundle = build_policy_from_config(source_model, algo)
    assert source_bundle.model.config.image_size == 56
    source = save_policy(source_bundle, tmp_path / "source", source_model, algo)
    # the run's group is the default one (28 px, LoRA): the source's 56 px full model is built
    run_model = ModelConfig(name="tiny", init_from=str(source))
    assert run_model.finetune == "lora" and not run_model.arch
    run = build_policy_from_config(run_model, algo)
    assert run.model.config.image_size == 56
    with torch.no_grad():
        run.model.projector.fc1.weight.add_(0.1)
    saved = save_policy(run, tmp_path / "run", run_model, algo)
    back = load_policy(saved)
    assert back.model.config.image_size == 56
    assert torch.equal(back.model.projector.fc1.weight, run.model.projector.fc1.weight)
    assert not any("lora" in name for name, _ in back.model.named_parameters())
    clash = dataclasses.replace(run_model, arch={"image_size": 84})
    with pytest.raises(UserError, match=r"model.arch=\{'image_size': 84\} with model.init_from"):
        build_policy_from_config(clash, algo)
    same = dataclasses.replace(run_model, arch={"image_size": 56})  # agrees: accepted
    assert build_policy_from_config(same, algo).model.config.image_size == 56
