"""Turn the ``model`` / ``algo`` config groups into a policy, and save / reload trained policies.

A saved policy is a directory::

    policy/
      policy.json                 how to rebuild it: the base model (a checkpoint directory, or
                                  "tiny": the tiny model initialised from a fixed seed, so its
                                  frozen weights are the same on every machine), the critic and
                                  LoRA options, the tokenizer kind, and fingerprints of the
                                  frozen base weights and of the tokenizer (checked at load)
      trainable.safetensors       every trained tensor (LoRA adapters or all weights, value head)
      trainable.safetensors.adapters/   the LoRA adapters in peft's own format

``load_policy(dir)`` rebuilds the exact policy for evaluation or as the starting point of another
run (``model.init_from=<dir>``, e.g. PPO after the SFT warm-up, paper Sec. 4.2).

Examples:
    >>> import tempfile
    >>> from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
    >>> model = ModelConfig(name="tiny", lora_rank=4, dtype="float32")
    >>> bundle = build_policy_from_config(model, AlgoConfig(name="ppo"))
    >>> path = save_policy(bundle, tempfile.mkdtemp(), model, AlgoConfig(name="ppo"))
    >>> reloaded = load_policy(path)
    >>> all(torch.equal(p, reloaded.model.state_dict()[k])
    ...     for k, p in bundle.model.state_dict().items())  # frozen base and trained tensors
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
from vla_torchrl.errors import UserError
from vla_torchrl.modules import BuiltinTokenizer, LoRASettings, PolicyBundle, build_policy
from vla_torchrl.modules.lora import drop_unused_adapters
from vla_torchrl.training.checkpointing import (
    check_finite,
    check_saved_dtypes,
    is_disk_full,
    replace_directory,
)

__all__ = [
    "base_fingerprint",
    "build_policy_from_config",
    "load_policy",
    "save_policy",
    "tokenizer_fingerprint",
]

POLICY_FILE = "policy.json"
TRAINABLE_FILE = "trainable.safetensors"
TINY_BASE = "tiny"
#: Seed of the tiny model's initialisation: fixed, so that frozen base weights need no file.
TINY_INIT_SEED = 1234

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# algo.critic -> build_policy(critic=..., critic_input=...)
_CRITICS = {
    "none": ("none", "h0"),
    "shared_h0": ("shared", "h0"),
    "shared_hn": ("shared", "hn"),
    "shared_concat": ("shared", "concat"),
    "separate": ("separate", "h0"),
}


def _policy_kwargs(model: ModelConfig, critic: str, optim_lrs: tuple[float, float]) -> dict:
    kind, critic_input = _CRITICS[critic]
    lora: LoRASettings | bool = (
        LoRASettings(rank=model.lora_rank, alpha=model.lora_alpha, dropout=model.lora_dropout)
        if model.finetune == "lora"
        else False
    )
    lr, value_lr = optim_lrs
    return {
        "lora": lora,
        "critic": kind,
        "critic_input": critic_input,
        "value_hidden": tuple(model.value_head_hidden),
        "temperature": model.temperature,
        # TPO / GRPO-with-KL need the frozen start policy; without LoRA a frozen copy provides it.
        "reference_copy": model.finetune == "full",
        "dtype": _DTYPES[model.dtype],
        "lr_lora": lr,
        "lr_full": lr,
        "lr_value": value_lr,
        "gradient_checkpointing": model.gradient_checkpointing,
        "freeze_vision": model.freeze_vision,
        "freeze_token_embedding": model.freeze_token_embedding,
    }


def build_policy_from_config(
    model: ModelConfig,
    algo: AlgoConfig,
    *,
    lr: float = 1e-4,
    value_lr: float = 3e-3,
    device: str | torch.device = "cpu",
) -> PolicyBundle:
    """Build the policy a run asks for (``model.init_from`` > ``model.checkpoint`` > tiny).

    Args:
        model: the model config group.
        algo: the algorithm config group (decides the critic).
        lr, value_lr: learning rates of the policy (LoRA or full) and of the value head.
        device: where the model lives.

    Raises:
        UserError: a missing checkpoint / policy directory, or an OpenVLA model without one.
    """
    kwargs = _policy_kwargs(model, algo.critic, (lr, value_lr))
    bundle = _build(model, algo, kwargs, device)
    head = _value_head(bundle)
    if head is not None and bundle.critic is head:  # a shared head (not a separate backbone's)
        head.detach_input = not algo.critic_trains_backbone
    return bundle


# What a run started from a saved policy (``model.init_from``) takes from that policy rather than
# from its own model group: the architecture, how it is fine-tuned, and the dtype. Its saved
# policy records these, so that a reload rebuilds what the run trained.
_SOURCE_FIELDS = (
    "name",
    "checkpoint",
    "finetune",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "dtype",
    "arch",
)


def _build(model: ModelConfig, algo: AlgoConfig, kwargs: dict, device) -> PolicyBundle:
    if model.init_from:
        _check_arch_matches_source(model)
        return _load(Path(model.init_from), device=device, overrides=kwargs, critic=algo.critic)
    if model.name == "openvla":
        if not model.checkpoint:
            raise UserError(
                "model.name=openvla needs model.checkpoint=<dir of an openvla-7b checkpoint "
                "(HF layout)>; nothing is downloaded. For CPU runs use model=tiny."
            )
        _require_dir(model.checkpoint, "model.checkpoint")
        return _from_checkpoint(model.checkpoint, "model.checkpoint", device=device, **kwargs)
    if model.checkpoint:
        _require_dir(model.checkpoint, "model.checkpoint")
        return _from_checkpoint(model.checkpoint, "model.checkpoint", device=device, **kwargs)
    return _build_random(model, device=device, **kwargs)


def _from_checkpoint(path: str, what: str, **kwargs: Any) -> PolicyBundle:
    """``build_policy("checkpoint", ...)``, its file errors (missing config / shards, truncated
    or mis-shaped tensors) turned into a one-line :class:`UserError` naming the directory."""
    try:
        return build_policy("checkpoint", checkpoint_path=path, **kwargs)
    except (ValueError, OSError, SafetensorError) as err:
        raise UserError(f"{what}={str(path)!r} cannot be loaded: {err}") from err


def _build_random(model: ModelConfig, **kwargs: Any) -> PolicyBundle:
    """The random-init ``tiny`` / ``small`` model (``model.arch`` resizes it), from a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_INIT_SEED)
        source = "small" if model.name == "small" else "tiny"
        return build_policy(source, overrides=dict(model.arch) or None, **kwargs)


def save_policy(
    bundle: PolicyBundle,
    directory: str | os.PathLike[str],
    model: ModelConfig,
    algo: AlgoConfig,
    *,
    trainable: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``bundle`` to ``directory`` (layout in the module docstring); returns the directory.

    ``trainable``: the trained tensors to write instead of the bundle's own (e.g. gathered from
    FSDP2 shards; full fine-tuning only, no peft adapters are written then).
    """
    # written beside the target and swapped in whole: a kill or a full disk mid-save leaves the
    # previous policy (or none), never a mix
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    directory = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    try:
        _write_policy(bundle, directory, model, algo, trainable)
        replace_directory(directory, final)
    except BaseException as err:
        shutil.rmtree(directory, ignore_errors=True)
        if is_disk_full(err, final.parent):
            raise UserError(
                f"disk full at {final.parent}: the policy {final} was not written; free space "
                "there and rerun (a finished training run resumes from its last checkpoint)"
            ) from err
        raise
    return final


def _source_spec(model: ModelConfig) -> dict[str, Any]:
    """The ``policy.json`` of ``model.init_from`` (read as :func:`load_policy` reads it)."""
    spec_file = Path(model.init_from) / POLICY_FILE
    try:
        spec = json.loads(spec_file.read_text())
        _check_spec_types(spec)
        ModelConfig(**spec["model"])
    except Exception as err:
        raise UserError(
            f"model.init_from={model.init_from}: {spec_file} is missing or not a valid policy "
            f"description ({type(err).__name__}: {err}); pass the 'policy' directory of a run"
        ) from err
    return spec


def built_model_config(model: ModelConfig) -> ModelConfig:
    """The model config a run builds: ``model`` itself, or with ``model.init_from`` the source
    policy's architecture, fine-tuning mode and dtype (:data:`_SOURCE_FIELDS`) in place of the
    run's own model group's (what :func:`build_policy_from_config` builds and
    :func:`save_policy` records; ``vla-torchrl-plan`` estimates it)."""
    if not model.init_from:
        return model
    source = _source_spec(model)["model"]
    return dataclasses.replace(model, **{k: source[k] for k in _SOURCE_FIELDS if k in source})


def _check_arch_matches_source(model: ModelConfig) -> None:
    """A run from a saved policy rebuilds that policy's architecture: refuse ``model.arch``
    values that say otherwise instead of ignoring them."""
    if not model.arch:
        return
    source = _source_spec(model)["model"].get("arch") or {}
    clash = {k: v for k, v in model.arch.items() if source.get(k) != v}
    if clash:
        raise UserError(
            f"model.arch={clash} with model.init_from={model.init_from}: a run from a saved "
            f"policy keeps that policy's architecture (model.arch={source}); drop the "
            "model.arch overrides, or resize by starting a new model without init_from"
        )


def _write_policy(
    bundle: PolicyBundle,
    directory: Path,
    model: ModelConfig,
    algo: AlgoConfig,
    trainable: dict[str, torch.Tensor] | None,
) -> None:
    base = str(Path(model.checkpoint).resolve()) if model.checkpoint else TINY_BASE
    # the bundle has the source policy's architecture, not the run's group
    model_spec = dataclasses.asdict(built_model_config(model))
    if model.init_from:
        base = _source_spec(model)["base_checkpoint"]
    head = _value_head(bundle)
    if head is not None:  # the sizes the saved value head has, which a reload must rebuild
        model_spec["value_head_hidden"] = list(head.hidden)
    spec: dict[str, Any] = {
        "model": model_spec,
        "critic": algo.critic,
        "base_checkpoint": base,
        "tokenizer": "builtin" if isinstance(_text_tokenizer(bundle), BuiltinTokenizer) else "auto",
        # the action statistics the policy un-normalises with (e.g. derived by SFT from its demos)
        "norm_stats": bundle.model.config.norm_stats,
        "unnorm_key": bundle.unnorm_key,
        "base_fingerprint": base_fingerprint(bundle),
        "tokenizer_fingerprint": tokenizer_fingerprint(bundle),
    }
    (directory / POLICY_FILE).write_text(json.dumps(spec, indent=2))
    if trainable is None:
        bundle.save_trainable(directory / TRAINABLE_FILE, base_model_name_or_path=base)
    else:
        from safetensors.torch import save_file

        state = {k: t.detach().to("cpu").contiguous() for k, t in trainable.items()}
        save_file(state, str(directory / TRAINABLE_FILE), metadata={"format": "pt"})


def _value_head(bundle: PolicyBundle):
    """The bundle's :class:`~vla_torchrl.modules.critic.ValueHead` (shared or separate critic),
    or ``None`` without a critic."""
    from vla_torchrl.modules.critic import ValueHead

    critic = bundle.critic
    if critic is None or isinstance(critic, ValueHead):
        return critic
    head = getattr(critic, "head", None)
    return head if isinstance(head, ValueHead) else None


def load_policy(
    directory: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    temperature: float | None = None,
) -> PolicyBundle:
    """Rebuild a policy saved by :func:`save_policy` (e.g. ``<run_dir>/policy``).

    Raises:
        UserError: the directory or one of its files is missing or does not match.
    """
    return _load(Path(directory), device=device, temperature=temperature)


def _load(
    directory: Path,
    *,
    device: str | torch.device,
    overrides: dict | None = None,
    temperature: float | None = None,
    critic: str | None = None,
) -> PolicyBundle:
    spec_file = directory / POLICY_FILE
    if not spec_file.is_file():
        raise UserError(
            f"{directory} is not a saved policy: {POLICY_FILE} is missing. Pass the 'policy' "
            "directory of a finished run (or a checkpoint's policy directory)."
        )
    try:
        spec = json.loads(spec_file.read_text())
        model = ModelConfig(**spec["model"])
        _check_spec_types(spec)
    except Exception as err:  # bad JSON, missing, unknown or mistyped fields
        reason = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        raise UserError(
            f"{spec_file} is not a valid policy description ({reason}); pass the 'policy' "
            "directory written by a training run"
        ) from err
    # A run starting from a saved policy may attach another critic (e.g. PPO after SFT): the
    # policy weights come from the file, a critic it lacks starts fresh.
    kwargs = _policy_kwargs(model, critic or spec["critic"], (1e-4, 3e-3))
    if overrides:
        # A run starting from this policy keeps its architecture but uses its own lrs / temperature.
        if critic not in (None, spec["critic"]):
            # ... and a critic the policy lacks starts fresh, with the run's own sizes (the
            # run's config is what its saved policy records)
            kwargs["value_hidden"] = overrides["value_hidden"]
        for key in (
            "lr_lora",
            "lr_full",
            "lr_value",
            "temperature",
            "reference_copy",
            "gradient_checkpointing",
            "freeze_vision",
            "freeze_token_embedding",
        ):
            kwargs[key] = overrides[key]
    if temperature is not None:
        kwargs["temperature"] = temperature
    tokenizer = "builtin" if spec.get("tokenizer") == "builtin" else "auto"
    base = spec["base_checkpoint"]
    if base == TINY_BASE:
        bundle = _build_random(model, device=device, text_tokenizer=tokenizer, **kwargs)
    else:
        _require_dir(base, f"the base checkpoint of {directory}")
        bundle = _from_checkpoint(
            base,
            f"the base checkpoint of {directory}",
            device=device,
            text_tokenizer=tokenizer,
            **kwargs,
        )
    _check_fingerprints(spec, bundle, spec_file, base)
    key = spec.get("unnorm_key")
    if key is not None:
        stats = (spec.get("norm_stats") or {}).get(key)
        if not isinstance(stats, dict):
            raise UserError(
                f"{spec_file}: unnorm_key={key!r} has no entry in its norm_stats; the policy "
                "directory is damaged (re-save it from its run)"
            )
        try:
            bundle.set_action_statistics(key, stats)
        except ValueError as err:
            raise UserError(f"{spec_file}: norm_stats[{key!r}]: {err}") from err
    trainable = directory / TRAINABLE_FILE
    if not trainable.is_file():
        raise UserError(f"{trainable} is missing: the policy directory is incomplete")
    fix = "re-save the policy from its run (the weights must keep the model's dtypes)"
    check_saved_dtypes(trainable, bundle.trainable_named_parameters(), fix=fix)
    try:
        _load_trainable(bundle, trainable, strict_critic=critic in (None, spec["critic"]))
    except (ValueError, OSError, SafetensorError, RuntimeError) as err:
        raise UserError(f"could not load {trainable}: {err}") from err
    check_finite(
        bundle.trainable_named_parameters(),
        where=str(trainable),
        fix="the run that saved it diverged; use an earlier policy or checkpoint",
    )
    return bundle


#: Text the tokenizer fingerprint encodes: words, punctuation, digits and a newline.
_TOKENIZER_PROBE = "In: What action should the robot take to put the 2 spoons on the towel?\nOut:"


def base_fingerprint(bundle: PolicyBundle) -> str:
    """A short hash of the frozen base weights (names, shapes and 64 values of each tensor).

    The trained tensors are saved with the policy; the frozen ones come from the base (a
    checkpoint or the seeded tiny model) at load, so a different base changes this hash. Cheap
    on a 7B model (it reads 64 strided values per tensor, not the weights).
    """
    digest = hashlib.sha256()
    for name, param in sorted(bundle.model.named_parameters()):
        if param.requires_grad:
            continue
        flat = param.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64].to("cpu", torch.float32)
        digest.update(f"{name}{tuple(param.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(bundle: PolicyBundle) -> str:
    """``<tokenizer class>:<hash of the ids of a fixed probe text>``."""
    tokenizer = _text_tokenizer(bundle)
    ids = json.dumps([int(i) for i in tokenizer.encode(_TOKENIZER_PROBE)])
    return f"{type(tokenizer).__name__}:{hashlib.sha256(ids.encode()).hexdigest()[:16]}"


def _check_fingerprints(spec: dict, bundle: PolicyBundle, spec_file: Path, base: str) -> None:
    """Refuse a base or tokenizer other than the saved one (policies saved before: unchecked)."""
    saved = spec.get("base_fingerprint")
    if saved is not None and saved != (now := base_fingerprint(bundle)):
        raise UserError(
            f"{spec_file}: the base weights built from {base!r} have fingerprint {now}, the "
            f"policy was saved on base weights {saved}; load it with the base checkpoint it "
            "was trained from (its adapters do not fit another base)"
        )
    saved = spec.get("tokenizer_fingerprint")
    if saved is not None and saved != (now := tokenizer_fingerprint(bundle)):
        raise UserError(
            f"{spec_file}: the policy was saved with tokenizer {saved}, the one available now "
            f"is {now}; provide the tokenizer it was trained with (the Llama-2 one: "
            "$VLA_TORCHRL_ASSETS with llama2-tokenizer/tokenizer.model)"
        )


_SPEC_TYPES = {  # policy.json field -> (allowed types, as the message says it)
    "critic": ((str,), "a string"),
    "base_checkpoint": ((str,), "a string (a directory or 'tiny')"),
    "tokenizer": ((str, type(None)), "a string"),
    "norm_stats": ((dict, type(None)), "a mapping or null"),
    "unnorm_key": ((str, type(None)), "a string or null"),
    "base_fingerprint": ((str,), "a string"),
    "tokenizer_fingerprint": ((str,), "a string"),
}


def _check_spec_types(spec: Any) -> None:
    if not isinstance(spec, dict):
        raise TypeError(f"the file holds a {type(spec).__name__}, not a mapping")
    for key, (types, want) in _SPEC_TYPES.items():
        if key in ("critic", "base_checkpoint") and key not in spec:
            raise KeyError(key)
        if key in spec and not isinstance(spec[key], types):
            raise TypeError(f"{key} is {spec[key]!r}, expected {want}")


def _load_trainable(bundle: PolicyBundle, path: Path, *, strict_critic: bool) -> None:
    if strict_critic:
        bundle.load_trainable(path)
        return
    from safetensors.torch import load_file

    state = drop_unused_adapters(load_file(str(path)), bundle.model)
    named = bundle.trainable_named_parameters()
    policy = {k for k in named if k.startswith("policy.")}
    saved = {k for k in state if k.startswith("policy.")}
    if policy != saved:
        raise ValueError(
            f"policy tensors differ: missing {sorted(policy - saved)[:3]}, "
            f"unexpected {sorted(saved - policy)[:3]}; build with the same model options"
        )
    with torch.no_grad():
        for key in policy:
            named[key].copy_(state[key].to(named[key].device, named[key].dtype))


def _text_tokenizer(bundle: PolicyBundle) -> object:
    return bundle.processor.prompt_tokenizer.text_tokenizer


def _require_dir(path: str | os.PathLike[str], what: str) -> None:
    if not Path(path).is_dir():
        raise UserError(f"{what}={str(path)!r} does not exist or is not a directory")
