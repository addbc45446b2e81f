"""Prompt building and tokenisation (one place for the whole toolkit).

OpenVLA's prompt (FACTS.md) is::

    In: What action should the robot take to {instruction.lower()}?\nOut:

encoded with BOS (id 1) first, then token 29871 (SentencePiece's lone ``"▁"``) appended when the
last id is not already 29871. A batch is left-padded with ``<PAD>`` (32000) so that every row
ends at the last column, with an attention mask marking real tokens; each row keeps BOS as its
first real token.

Two text tokenizers share that interface (``encode(text) -> list[int]`` with BOS first):

- :class:`SentencePieceTokenizer`: the real Llama-2 ``tokenizer.model`` read with sentencepiece
  (the slow Llama tokenizer's backend; transformers 5's ``LlamaTokenizer(vocab_file=...)``
  builds a ``tokenizers`` model that returns no ids for a bare ``.model`` file here).
- :class:`BuiltinTokenizer`: deterministic, lower-case word-level ids below 31744 (never an
  action id, never 29871), for tests and demos without the asset.

Examples:
    >>> build_prompt("Put the Carrot on the plate")
    'In: What action should the robot take to put the carrot on the plate?\\nOut:'
    >>> tok = PromptTokenizer(BuiltinTokenizer())
    >>> ids, mask = tok(["pick up the cube", "stack"])
    >>> ids.shape == mask.shape, ids[1, 0].item(), ids[:, -1].tolist()
    (True, 32000, [29871, 29871])
    >>> ids[0, 0].item(), mask.sum(1).tolist()
    (1, [19, 16])
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

__all__ = [
    "BuiltinTokenizer",
    "PromptTokenizer",
    "SentencePieceTokenizer",
    "TextTokenizer",
    "build_prompt",
    "default_text_tokenizer",
]

BOS_ID = 1
PAD_ID = 32000
PROMPT_END_ID = 29871
FIRST_ACTION_ID = 31744


def build_prompt(instruction: str) -> str:
    """OpenVLA's prompt for ``instruction`` (lower-cased, FACTS.md)."""
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"


class TextTokenizer(Protocol):
    """``encode(text)`` -> ids with BOS first (no 29871 handling; :class:`PromptTokenizer` adds it)."""

    def encode(self, text: str) -> list[int]: ...


class SentencePieceTokenizer:
    """The Llama-2 SentencePiece model (``tokenizer.model``).

    Args:
        model_file: path to ``tokenizer.model`` (``AssetPaths.resolve().tokenizer_model``).
    """

    def __init__(self, model_file: str | os.PathLike[str]) -> None:
        import sentencepiece as spm

        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"Llama-2 tokenizer model not found at {path}; set $VLA_TORCHRL_ASSETS to a folder "
                "with llama2-tokenizer/tokenizer.model, or use BuiltinTokenizer()."
            )
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.bos_id = self.sp.bos_id()

    def encode(self, text: str) -> list[int]:
        return [self.bos_id, *self.sp.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids])


class BuiltinTokenizer:
    """Deterministic word/punctuation-level tokenizer for tests (no asset needed).

    Text is lower-cased and split into words and punctuation marks; each piece maps to
    ``3 + crc32(piece) % 31741`` (ids 3..31743), skipping 29871. ``"\\n"`` maps to 13 as in
    Llama-2. BOS is 1.

    Examples:
        >>> BuiltinTokenizer().encode("Out:") == BuiltinTokenizer().encode("out :")
        True
    """

    _PIECES = re.compile(r"\n|[a-z0-9]+|[^\sa-z0-9]")

    def encode(self, text: str) -> list[int]:
        ids = [BOS_ID]
        for piece in self._PIECES.findall(text.lower()):
            if piece == "\n":
                ids.append(13)
                continue
            token = 3 + zlib.crc32(piece.encode()) % (FIRST_ACTION_ID - 3)
            ids.append(token + 1 if token == PROMPT_END_ID else token)
        return ids


def default_text_tokenizer(model_file: str | os.PathLike[str] | None = None) -> TextTokenizer:
    """The Llama-2 tokenizer when its model file is found (explicit path or assets), else builtin."""
    if model_file is None:
        from vla_torchrl.assets import AssetPaths, fall_back

        model_file = AssetPaths.resolve().tokenizer_model
        if model_file is None:
            fall_back("the Llama-2 tokenizer.model", "the built-in tokenizer")
    return SentencePieceTokenizer(model_file) if model_file is not None else BuiltinTokenizer()


class PromptTokenizer:
    """Instructions -> left-padded prompt ids and attention mask.

    Args:
        text_tokenizer: a :class:`TextTokenizer` (Llama-2 SentencePiece or builtin).
        pad_token_id: id of left pads (``<PAD>`` = 32000).
        prompt_end_token_id: appended when the last id differs (29871).
    """

    def __init__(
        self,
        text_tokenizer: TextTokenizer,
        *,
        pad_token_id: int = PAD_ID,
        prompt_end_token_id: int = PROMPT_END_ID,
    ) -> None:
        self.text_tokenizer = text_tokenizer
        self.pad_token_id = pad_token_id
        self.prompt_end_token_id = prompt_end_token_id
        self._cache: dict[str, list[int]] = {}

    def encode(self, instruction: str) -> list[int]:
        """Prompt ids of one instruction: BOS, prompt, then 29871 unless already last."""
        ids = self._cache.get(instruction)
        if ids is None:
            ids = list(self.text_tokenizer.encode(build_prompt(instruction)))
            if ids[-1] != self.prompt_end_token_id:
                ids.append(self.prompt_end_token_id)
            if len(self._cache) < 4096:
                self._cache[instruction] = ids
        return ids

    def __call__(
        self, instructions: Sequence[str], *, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(input_ids [B, L], attention_mask [B, L])``, left-padded, int64."""
        if isinstance(instructions, str):
            raise TypeError("PromptTokenizer expects a sequence of instructions, got one str.")
        rows = [self.encode(str(text)) for text in instructions]
        if not rows:
            raise ValueError("PromptTokenizer got an empty batch of instructions.")
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, length - len(row) :] = 1
        return ids.to(device), mask.to(device)
