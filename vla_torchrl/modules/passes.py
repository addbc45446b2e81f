"""The two ways the policy runs the backbone: prefix prefill and the teacher-forced pass.

Both build ``[PAD.., BOS, patches, prompt.., 29871]`` (left-padded) through
:meth:`OpenVLA.assemble`; because every row ends at the last column, the hidden state that
predicts the first action token (h^0, paper Sec. 4.2) sits at column ``T0 - 1`` for every row,
where ``T0`` is the prefix length.

Examples:
    >>> import torch
    >>> logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    >>> logp = restricted_log_probs(logits, temperature=1.0)
    >>> round(logp.exp().sum().item(), 6), round(entropy(logp).item(), 4)
    (1.0, 1.3863)
"""

from __future__ import annotations

import torch

from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.processors.bundle import OpenVLAProcessor

__all__ = ["entropy", "prefix_inputs", "restricted_log_probs", "teacher_forced_hidden"]


def prefix_inputs(
    model: OpenVLA, processor: OpenVLAProcessor, images: torch.Tensor, instructions: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs_embeds, attention_mask, position_ids)`` of image + prompt, on the model's device."""
    device = model.projector.fc1.weight.device
    pixels = processor.image_processor(images.to(device))
    ids, mask = processor.prompt_tokenizer(instructions, device=device)
    return model.assemble(ids, mask, model.embed_images(pixels))


def restricted_log_probs(action_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """``log_softmax(logits / T)`` over the 256 action logits only (float32)."""
    return torch.log_softmax(action_logits.float() / temperature, dim=-1)


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Entropy of categorical distributions given their log-probs on the last axis."""
    return -(log_probs.exp() * log_probs).sum(-1)


def teacher_forced_hidden(
    model: OpenVLA,
    processor: OpenVLAProcessor,
    images: torch.Tensor,
    instructions: list[str],
    tokens: torch.Tensor | None,
) -> torch.Tensor:
    """Last-layer hidden states ``[N, K + 1, H]`` from ONE forward over prefix + ``K`` tokens.

    Row ``k`` is the state that predicts action token ``k`` (``k = 0`` is h^0); the last row
    ``K`` is the state after the last given token (h^n). With ``tokens=None`` only h^0.
    """
    embeds, mask, pos = prefix_inputs(model, processor, images, instructions)
    prefix_len = embeds.shape[1]
    if tokens is not None:
        tokens = tokens.to(embeds.device)
        k = tokens.shape[1]
        embeds = torch.cat([embeds, model.embed_tokens(tokens)], dim=1)
        mask = torch.cat([mask, torch.ones_like(tokens, dtype=mask.dtype)], dim=1)
        step = torch.arange(1, k + 1, device=pos.device)
        pos = torch.cat([pos, pos[:, -1:] + step], dim=1)
    hidden = model.backbone(embeds, mask, pos).last_hidden_state
    return hidden[:, prefix_len - 1 :]
