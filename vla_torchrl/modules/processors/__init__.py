"""Processing apart from weights: images, prompts, action tokens."""

from vla_torchrl.modules.processors.action import ActionTokenizer, action_statistics
from vla_torchrl.modules.processors.bundle import OpenVLAProcessor, read_observation
from vla_torchrl.modules.processors.image import OpenVLAImageProcessor
from vla_torchrl.modules.processors.prompt import (
    BuiltinTokenizer,
    PromptTokenizer,
    SentencePieceTokenizer,
    build_prompt,
    default_text_tokenizer,
)

__all__ = [
    "ActionTokenizer",
    "action_statistics",
    "OpenVLAProcessor",
    "read_observation",
    "BuiltinTokenizer",
    "OpenVLAImageProcessor",
    "PromptTokenizer",
    "SentencePieceTokenizer",
    "build_prompt",
    "default_text_tokenizer",
]
