"""LoRA adapters via peft: rank 32 on all linear layers, adapters + value head trainable.

Defaults follow the paper (rank 32 on all linear layers, Sec. 5) and OpenVLA's fine-tuning
script (``lora_alpha = min(rank, 16)``, dropout 0, Gaussian init of ``A``, zero ``B``).
"All linear layers" means every ``nn.Linear`` of the VLA (both ViTs, the projector, the Llama
attention and MLP projections) except the LM head, as peft's ``"all-linear"`` does for
transformers models; SigLIP's attention-pool head and each ViT's last block are skipped too
because OpenVLA's forward never uses them (adapters there would never receive a gradient).

Examples:
    >>> import torch
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> from vla_torchrl.modules.openvla import OpenVLA
    >>> peft_model = apply_lora(OpenVLA(OpenVLAConfig.tiny()), LoRASettings(rank=4))
    >>> names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    >>> all("lora_" in n for n in names), any("q_proj.lora_B" in n for n in names)
    (True, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from vla_torchrl.modules.openvla import OpenVLA

__all__ = [
    "LoRASettings",
    "apply_lora",
    "base_model",
    "linear_target_names",
    "load_adapters",
    "lora_parameters",
    "save_adapters",
    "trainable_parameter_groups",
    "unused_block_prefixes",
]


@dataclass
class LoRASettings:
    """LoRA hyperparameters.

    Attributes:
        rank: adapter rank (32 in the paper).
        alpha: scaling numerator (``None``: ``min(rank, 16)``, OpenVLA's fine-tuning default).
        dropout: dropout on the adapter input.
        targets: ``"all-linear"`` or explicit module-name suffixes (e.g. ``["q_proj", "v_proj"]``).
        init: peft ``init_lora_weights`` (``"gaussian"``: Gaussian ``A``, zero ``B``).
        adapter_dtype: ``"model"`` (default): adapters in the base weights' dtype (bf16 for
            the 7B model), as OpenVLA's fine-tuning had them; ``"float32"``: peft's autocast of
            adapters to fp32, whose ``Linear`` then keeps an fp32 copy of every bf16 input for
            the backward (on the 7B update 14 GB of 25 GB of activations, FACTS.md).
    """

    rank: int = 32
    alpha: float | None = None
    dropout: float = 0.0
    targets: Literal["all-linear"] | list[str] = "all-linear"
    init: bool | str = "gaussian"
    exclude: list[str] = field(default_factory=lambda: ["language_model.lm_head", ".attn_pool."])
    adapter_dtype: Literal["model", "float32"] = "model"

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRASettings.rank={self.rank} must be >= 1.")
        if self.adapter_dtype not in ("model", "float32"):
            raise ValueError(
                f"LoRASettings.adapter_dtype={self.adapter_dtype!r} must be 'model' or 'float32'."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRASettings.dropout={self.dropout} must be in [0, 1).")
        if self.targets != "all-linear" and (
            isinstance(self.targets, str) or not list(self.targets)
        ):
            raise ValueError(
                f"LoRASettings.targets={self.targets!r}: use 'all-linear' or a non-empty list of "
                "module-name suffixes."
            )


def unused_block_prefixes(model: nn.Module) -> list[str]:
    """Module-name prefixes of the blocks OpenVLA never runs: each ViT's last block.

    Features are read after the second-to-last block (FACTS.md), so adapters in the last block
    would never get a gradient but would take optimizer state.
    """
    if not isinstance(model, OpenVLA):
        return []
    towers = ("featurizer", "fused_featurizer")
    return [
        f"vision_backbone.{tower}.blocks.{len(getattr(model.vision_backbone, tower).blocks) - 1}."
        for tower in towers
    ]


def drop_unused_adapters(state: dict, model: nn.Module) -> dict:
    """``state`` without LoRA tensors of the never-run ViT blocks (:func:`unused_block_prefixes`).

    Policies saved before those blocks were excluded hold such adapters; they never received a
    gradient (still their initial values), so leaving them out loses nothing and such policies
    keep loading.
    """
    unused = unused_block_prefixes(model)
    return {k: v for k, v in state.items() if not ("lora_" in k and any(u in k for u in unused))}


def linear_target_names(model: nn.Module, settings: LoRASettings) -> list[str]:
    """Full names of the ``nn.Linear`` modules that get adapters (none in unused blocks)."""
    names = []
    unused = unused_block_prefixes(model)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any(ex in name or name == ex for ex in settings.exclude):
            continue
        if any(name.startswith(prefix) for prefix in unused):
            continue
        if settings.targets != "all-linear" and not any(
            name == t or name.endswith("." + t) for t in settings.targets
        ):
            continue
        names.append(name)
    if not names:
        raise ValueError(f"LoRA: no linear layer matches targets={settings.targets!r}.")
    return names


def apply_lora(model: OpenVLA, settings: LoRASettings | None = None) -> PeftModel:
    """Inject LoRA adapters (in place) and freeze every base weight; returns the ``PeftModel``.

    The OpenVLA object passed in stays usable: its linear layers now carry the adapters, so
    the actor/evaluator keep calling it; the ``PeftModel`` gives ``disable_adapter()`` and
    ``save_pretrained()``.
    """
    settings = settings or LoRASettings()
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha if settings.alpha is not None else min(settings.rank, 16),
        lora_dropout=settings.dropout,
        target_modules=linear_target_names(model, settings),
        init_lora_weights=settings.init,
    )
    # autocast_adapter_dtype=False: adapters in the model's dtype (no fp32 copies of inputs)
    return get_peft_model(model, config, autocast_adapter_dtype=settings.adapter_dtype == "float32")


def base_model(model: nn.Module) -> OpenVLA:
    """The OpenVLA inside a ``PeftModel`` (or the model itself)."""
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    if not isinstance(inner, OpenVLA):
        raise TypeError(f"expected an OpenVLA or a PeftModel around one, got {type(inner)}.")
    return inner


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable adapter parameters."""
    return [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]


def trainable_parameter_groups(
    model: nn.Module,
    value_head: nn.Module | None = None,
    *,
    lr_lora: float = 1e-4,
    lr_value: float = 3e-3,
    extra: Iterable[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """AdamW parameter groups: adapters (lr 1e-4) and value head (lr 3e-3), as in RL4VLA."""
    groups = [{"params": lora_parameters(model), "lr": lr_lora, "name": "lora"}]
    if value_head is not None:
        groups.append({"params": list(value_head.parameters()), "lr": lr_value, "name": "value"})
    groups.extend(extra)
    return [g for g in groups if g["params"]]


def save_adapters(
    model: PeftModel,
    path: str | os.PathLike[str],
    *,
    base_model_name_or_path: str | None = None,
) -> None:
    """Save only the adapters (peft format: ``adapter_config.json`` + safetensors).

    peft keeps ``target_modules`` as a set and writes it in set order, which changes from one
    process to the next (string hashing); the list is sorted so the same policy gives the same
    bytes. peft leaves ``base_model_name_or_path`` null for our OpenVLA (it has no hub name):
    ``base_model_name_or_path`` (the base checkpoint directory, or ``"tiny"``) is written there.
    """
    model.save_pretrained(str(path), safe_serialization=True)
    config_file = Path(path) / "adapter_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        if isinstance(config.get("target_modules"), list):
            config["target_modules"] = sorted(config["target_modules"])
        if base_model_name_or_path is not None:
            config["base_model_name_or_path"] = str(base_model_name_or_path)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_adapters(
    model: OpenVLA, path: str | os.PathLike[str], *, is_trainable: bool = False
) -> PeftModel:
    """Attach adapters saved by :func:`save_adapters` to a base OpenVLA."""
    if not (os.path.isdir(path) and os.path.isfile(os.path.join(path, "adapter_config.json"))):
        raise FileNotFoundError(
            f"No peft adapters at {path} (adapter_config.json missing); save with save_adapters()."
        )
    # adapters in the model's dtype, as apply_lora makes them
    return PeftModel.from_pretrained(
        model, str(path), is_trainable=is_trainable, autocast_adapter_dtype=False
    )
