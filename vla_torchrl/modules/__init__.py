"""modules layer: OpenVLA (timm + transformers), processing, rollout actor, evaluator, critics, LoRA.

Entry point for recipes: :func:`build_policy` (see :mod:`vla_torchrl.modules.factory`).
"""

from vla_torchrl.modules.actor import OpenVLAActor, generate_action_tokens
from vla_torchrl.modules.checkpoint import CheckpointError, load_openvla, save_openvla
from vla_torchrl.modules.config import OpenVLAConfig, ViTConfig
from vla_torchrl.modules.critic import (
    CriticInput,
    SeparateBackboneCritic,
    SharedValueNetwork,
    ValueHead,
    critic_input_dim,
    value_operator,
)
from vla_torchrl.modules.evaluator import OpenVLAEvaluator
from vla_torchrl.modules.factory import PolicyBundle, build_model, build_policy
from vla_torchrl.modules.lora import (
    LoRASettings,
    apply_lora,
    load_adapters,
    save_adapters,
    trainable_parameter_groups,
)
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.processors import (
    ActionTokenizer,
    BuiltinTokenizer,
    OpenVLAImageProcessor,
    OpenVLAProcessor,
    PromptTokenizer,
    SentencePieceTokenizer,
    build_prompt,
)

__all__ = [
    "ActionTokenizer",
    "BuiltinTokenizer",
    "CheckpointError",
    "CriticInput",
    "LoRASettings",
    "OpenVLA",
    "OpenVLAActor",
    "OpenVLAConfig",
    "OpenVLAEvaluator",
    "OpenVLAImageProcessor",
    "OpenVLAProcessor",
    "PolicyBundle",
    "PromptTokenizer",
    "SentencePieceTokenizer",
    "SeparateBackboneCritic",
    "SharedValueNetwork",
    "ValueHead",
    "ViTConfig",
    "apply_lora",
    "build_model",
    "build_policy",
    "build_prompt",
    "critic_input_dim",
    "generate_action_tokens",
    "load_adapters",
    "load_openvla",
    "save_adapters",
    "save_openvla",
    "trainable_parameter_groups",
    "value_operator",
]
