"""Load what ``sft_experiment.py`` / ``pretrain_vision.py`` wrote: a state dict (``last.pt``,
``best.pt``) and the ``cfg.json`` beside it, the small model's config and action statistics."""

import json
from pathlib import Path

import torch

from vla_torchrl.modules import build_policy
from vla_torchrl.modules.config import OpenVLAConfig, ViTConfig


def saved_config(state_dict: str) -> OpenVLAConfig:
    """The :class:`OpenVLAConfig` of the run that wrote ``state_dict`` (its ``cfg.json``)."""
    cfg = json.loads((Path(state_dict).parent / "cfg.json").read_text())["cfg"]
    cfg["dino"], cfg["siglip"] = ViTConfig(**cfg["dino"]), ViTConfig(**cfg["siglip"])
    return OpenVLAConfig(**cfg)


def saved_policy(state_dict: str):
    """The run's policy bundle with its weights, in eval mode (actions un-normalised with the
    demos' statistics, ``unnorm_key="maniskill_cpu"``)."""
    b = build_policy(
        "tiny",
        config=saved_config(state_dict),
        lora=False,
        critic="none",
        unnorm_key="maniskill_cpu",
    )
    b.model.load_state_dict(torch.load(state_dict, weights_only=True))
    b.model.eval()
    return b
