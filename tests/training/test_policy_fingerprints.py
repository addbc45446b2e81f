"""Saved policies carry fingerprints of their frozen base weights and tokenizer (issue 16):
loading onto another base or tokenizer is refused; policies saved before them still load."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from vla_torchrl.assets import AssetPaths
from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
from vla_torchrl.errors import UserError
from vla_torchrl.training import policy as policy_module
from vla_torchrl.training.policy import build_policy_from_config, load_policy, save_policy


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, algo = ModelConfig(name="tiny", lora_rank=2, dtype="float32"), AlgoConfig(name="ppo")
    bundle = build_policy_from_config(model, algo)
    with torch.no_grad():  # a trained adapter: the reload must bring it back
        for _, p in bundle.trainable_named_parameters().items():
            p.add_(0.01)
    path = save_policy(bundle, tmp_path_factory.mktemp("policy"), model, algo)
    return bundle, path


def _copy(path, tmp_path, **changes):
    target = tmp_path / "policy"
    shutil.copytree(path, target)
    spec = json.loads((target / "policy.json").read_text())
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    (target / "policy.json").write_text(json.dumps(spec))
    return target


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fingerprints_are_saved_and_the_policy_reloads(saved):
    bundle, path = saved
    spec = json.loads((path / "policy.json").read_text())
    assert len(spec["base_fingerprint"]) == 16
    llama = AssetPaths.resolve().tokenizer_model is not None  # "auto": Llama-2 when installed
    kind = "SentencePieceTokenizer:" if llama else "BuiltinTokenizer:"
    assert spec["tokenizer_fingerprint"].startswith(kind)
    assert _same_weights(load_policy(path), bundle)


def test_a_different_base_is_refused_naming_both_fingerprints(saved, monkeypatch):
    _, path = saved
    spec = json.loads((path / "policy.json").read_text())
    monkeypatch.setattr(policy_module, "TINY_INIT_SEED", 4321)  # the base now differs
    with pytest.raises(UserError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message and f"saved on base weights {spec['base_fingerprint']}" in message
    now = message.split("have fingerprint ")[1].split(",")[0]
    assert len(now) == 16 and now != spec["base_fingerprint"]
    assert "load it with the base checkpoint it was trained from" in message


def test_a_policy_saved_with_another_tokenizer_is_refused(saved, tmp_path, monkeypatch):
    """Saved with the Llama-2 tokenizer, reloaded where only the built-in one is available."""
    _, path = saved
    spec = json.loads((path / "policy.json").read_text())
    if spec["tokenizer_fingerprint"].startswith("SentencePieceTokenizer:"):
        target, llama = path, spec["tokenizer_fingerprint"]  # the real Llama-2 fingerprint
    else:  # no Llama-2 tokenizer here: write the field as a Llama-2 save would
        llama = "SentencePieceTokenizer:0123456789abcdef"
        target = _copy(path, tmp_path, tokenizer="auto", tokenizer_fingerprint=llama)
    empty = tmp_path / "no-assets"
    empty.mkdir()
    monkeypatch.setenv("VLA_TORCHRL_ASSETS", str(empty))
    assert AssetPaths.resolve().tokenizer_model is None
    with pytest.raises(UserError) as info:
        load_policy(target)
    message = str(info.value)
    assert "\n" not in message and f"saved with tokenizer {llama}" in message
    assert "the one available now is BuiltinTokenizer:" in message
    assert "llama2-tokenizer/tokenizer.model" in message


def test_policies_saved_without_fingerprints_still_load(saved, tmp_path):
    bundle, path = saved
    target = _copy(path, tmp_path, base_fingerprint=None, tokenizer_fingerprint=None)
    assert _same_weights(load_policy(target), bundle)


def test_the_adapter_config_names_the_base(saved):
    _, path = saved
    config = json.loads(
        (path / "trainable.safetensors.adapters" / "adapter_config.json").read_text()
    )
    assert config["base_model_name_or_path"] == "tiny"  # the seeded tiny base (a dir otherwise)
    assert config["target_modules"] == sorted(config["target_modules"])
