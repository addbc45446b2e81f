"""The three processing steps bundled for a model, plus reading them from a tensordict.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from vla_torchrl.keys import IMAGE_KEY, INSTRUCTION_KEY
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> proc = OpenVLAProcessor.from_config(OpenVLAConfig.tiny(), text_tokenizer="builtin")
    >>> td = TensorDict({IMAGE_KEY: torch.zeros(2, 3, 8, 8, 3, dtype=torch.uint8)}, [2, 3])
    >>> _ = td.set_non_tensor(INSTRUCTION_KEY, "pick the cube")
    >>> images, texts = read_observation(td, IMAGE_KEY, INSTRUCTION_KEY)
    >>> images.shape, len(texts), texts[0]
    (torch.Size([6, 8, 8, 3]), 6, 'pick the cube')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.processors.action import ActionTokenizer
from vla_torchrl.modules.processors.image import OpenVLAImageProcessor
from vla_torchrl.modules.processors.prompt import (
    BuiltinTokenizer,
    PromptTokenizer,
    TextTokenizer,
    default_text_tokenizer,
)
from vla_torchrl.utils.text_bytes import decode_strings

__all__ = ["OpenVLAProcessor", "read_observation"]


@dataclass
class OpenVLAProcessor:
    """Image preprocessing + prompt tokenisation + action (de)tokenisation for one model."""

    image_processor: OpenVLAImageProcessor
    prompt_tokenizer: PromptTokenizer
    action_tokenizer: ActionTokenizer

    @classmethod
    def from_config(
        cls,
        config: OpenVLAConfig,
        *,
        text_tokenizer: TextTokenizer | Literal["auto", "builtin"] = "auto",
        tokenizer_model: str | os.PathLike[str] | None = None,
        unnorm_key: str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> OpenVLAProcessor:
        """Build the steps for ``config``.

        Args:
            text_tokenizer: ``"auto"`` (Llama-2 model if found, else builtin), ``"builtin"``,
                or a tokenizer object.
            tokenizer_model: explicit ``tokenizer.model`` path (used by ``"auto"``).
            unnorm_key: which ``config.norm_stats`` entry un-normalises actions.
            dtype: pixel dtype (the model's compute dtype).
        """
        if text_tokenizer == "auto":
            text_tokenizer = default_text_tokenizer(tokenizer_model)
        elif text_tokenizer == "builtin":
            text_tokenizer = BuiltinTokenizer()
        first, end = config.action_token_ids
        return cls(
            image_processor=OpenVLAImageProcessor(image_size=config.image_size, dtype=dtype),
            prompt_tokenizer=PromptTokenizer(
                text_tokenizer,
                pad_token_id=config.pad_token_id,
                prompt_end_token_id=config.prompt_end_token_id,
            ),
            action_tokenizer=ActionTokenizer.from_norm_stats(
                config.norm_stats,
                unnorm_key,
                n_bins=config.n_action_bins,
                base_vocab_size=end,
            ),
        )


def _flatten_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode()]
    if isinstance(value, Sequence):
        out: list[str] = []
        for item in value:
            out.extend(_flatten_strings(item))
        return out
    raise TypeError(f"instruction must be a str (or nested lists of str), got {type(value)}.")


def read_observation(
    td: TensorDictBase, image_key: NestedKey, instruction_key: NestedKey
) -> tuple[torch.Tensor, list[str]]:
    """Images ``[N, H, W, 3]`` and ``N`` instructions from a tensordict with batch dims ``B``.

    ``N = prod(B)``; a single instruction shared by the whole batch is broadcast. The
    instruction entry holds strings, or their UTF-8 bytes ``uint8 [*B, L]`` (zero-padded, as
    :class:`~vla_torchrl.envs.transforms.InstructionBytes` writes them).
    """
    images = td.get(image_key, None)
    if images is None:
        raise KeyError(
            f"no image at {image_key!r}; the input has {sorted(map(str, td.keys(True, True)))}. "
            "Write uint8 [*B, H, W, 3] frames there, or point the module at your key with "
            "set_keys(image=...)"
        )
    if td.batch_dims == 0:
        raise ValueError(
            f"the input tensordict is unbatched (batch_size=[]) with {image_key!r} of shape "
            f"{tuple(images.shape)}; give it a batch dimension, e.g. td.unsqueeze(0)"
        )
    shape = tuple(images.shape[td.batch_dims :])
    if len(shape) != 3 or shape[-1] != 3:
        hint = (
            " (channels first? these modules take HWC frames: permute back, e.g. "
            "PermuteTransform((-2, -1, -3)) after CHW transforms)"
            if len(shape) == 3 and shape[0] == 3
            else ""
        )
        raise ValueError(
            f"{image_key!r} has shape {tuple(images.shape)} for batch {tuple(td.batch_size)}: "
            f"expected [*B, H, W, 3] RGB frames{hint}"
        )
    numel = td.batch_size.numel()
    images = images.reshape(numel, *shape)
    raw = td.get(instruction_key, None)
    if raw is None:
        raise KeyError(
            f"no instruction at {instruction_key!r}; the input has "
            f"{sorted(map(str, td.keys(True, True)))}. Write one string per env there, or use "
            "set_keys(instruction=...)"
        )
    if isinstance(raw, torch.Tensor):
        if raw.dtype != torch.uint8:
            raise TypeError(
                f"{instruction_key!r} holds a {raw.dtype} tensor; instructions are strings or "
                "their UTF-8 bytes (uint8 [*B, L], envs.transforms.InstructionBytes)"
            )
        texts = decode_strings(raw.reshape(-1, raw.shape[-1]))
    else:
        value = raw.tolist() if hasattr(raw, "tolist") else raw
        texts = _flatten_strings(value)
    if len(texts) == 1 and numel != 1:
        texts = texts * numel
    if len(texts) != numel:
        raise ValueError(
            f"read_observation: {len(texts)} instructions for a batch of {numel} "
            f"(batch_size={tuple(td.batch_size)}); write one instruction per env."
        )
    return images, texts
