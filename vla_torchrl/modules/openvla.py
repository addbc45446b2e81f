"""OpenVLA: fused DINOv2+SigLIP featurizer, GELU MLP projector, Llama-2 (``LlamaForCausalLM``).

The module tree mirrors the ``openvla/openvla-7b`` checkpoint, so ``state_dict()`` keys and shapes
are the checkpoint's (``vision_backbone.featurizer.*``, ``vision_backbone.fused_featurizer.*``,
``projector.fc1/fc2/fc3``, ``language_model.*``). transformers has no OpenVLA class and the
checkpoint's remote code does not run on timm 1.x / transformers 5.x, hence this module.

Sequence layout (left-padded batch)::

    [<PAD> ... <PAD>, BOS, patch_1 ... patch_P, prompt tokens ..., 29871]

Patch embeddings go right after BOS; position ids count only attended tokens
(``cumsum(attention_mask) - 1``), so a sample gives the same result alone and inside a batch.

The action head is the ``lm_head`` restricted to the 256 action rows (ids 31744..31999):
:meth:`OpenVLA.action_logits` computes only those logits, which equals slicing the full logits.

Examples:
    >>> import torch
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> cfg = OpenVLAConfig.tiny()
    >>> model = OpenVLA(cfg)
    >>> pixels = torch.zeros(1, 6, cfg.image_size, cfg.image_size)
    >>> ids = torch.tensor([[1, 500, 29871]])
    >>> emb, mask, pos = model.assemble(ids, torch.ones_like(ids), model.embed_images(pixels))
    >>> emb.shape, pos[0, -1].item()
    (torch.Size([1, 19, 64]), 18)
    >>> with torch.device("meta"):
    ...     big = OpenVLA(OpenVLAConfig.openvla_7b())
    >>> sum(p.numel() for p in big.parameters())
    7541237184
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.vision import FusedFeaturizer

__all__ = ["OpenVLA", "Projector", "llama_config"]


class Projector(nn.Module):
    """``fc1`` -> GELU -> ``fc2`` -> GELU -> ``fc3`` (OpenVLA's ``fused-gelu-mlp``)."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(features)))))


def llama_config(config: OpenVLAConfig) -> LlamaConfig:
    """The ``transformers.LlamaConfig`` of the language model (untied head, vocab 32064)."""
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.llm_hidden_size,
        intermediate_size=config.llm_intermediate_size,
        num_hidden_layers=config.llm_num_layers,
        num_attention_heads=config.llm_num_heads,
        num_key_value_heads=config.llm_num_kv_heads,
        max_position_embeddings=config.llm_max_position_embeddings,
        rms_norm_eps=config.llm_rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.llm_rope_theta},
        bos_token_id=config.bos_token_id,
        eos_token_id=2,
        pad_token_id=config.pad_token_id,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )


class OpenVLA(nn.Module):
    """The OpenVLA network (weights only; processing lives in :mod:`vla_torchrl.modules.processing`).

    Args:
        config: an :class:`OpenVLAConfig` (``openvla_7b()`` or ``tiny()``).
    """

    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_backbone = FusedFeaturizer(config)
        self.projector = Projector(config.vision_dim, config.llm_hidden_size)
        self.language_model = LlamaForCausalLM(llama_config(config))
        #: True: :meth:`embed_images` runs without gradient (towers and projector stay as they are)
        self.vision_frozen = False
        #: True: :meth:`embed_tokens` runs without gradient (the token embedding stays as it is)
        self.token_embedding_frozen = False

    # -- pieces ------------------------------------------------------------------------
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 6, S, S]`` pixels -> projected patch embeddings ``[B, P, H]`` (without gradient
        when :attr:`vision_frozen`: nothing upstream of the LLM then trains)."""
        dtype = self.projector.fc1.weight.dtype
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.vision_frozen):
            return self.projector(self.vision_backbone(pixel_values.to(dtype)))

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings of the language model (without gradient when
        :attr:`token_embedding_frozen`)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.token_embedding_frozen):
            return self.language_model.get_input_embeddings()(input_ids)

    def assemble(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        patch_embeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Insert patch embeddings right after BOS in a left-padded batch.

        Args:
            input_ids: ``[B, L]`` prompt ids, left-padded, each row ``[PAD.., BOS, ...]``.
            attention_mask: ``[B, L]`` (1 = token, 0 = left pad).
            patch_embeds: ``[B, P, H]`` from :meth:`embed_images`.

        Returns:
            ``(inputs_embeds [B, L+P, H], attention_mask [B, L+P], position_ids [B, L+P])``.
        """
        batch, length = input_ids.shape
        n_patch = patch_embeds.shape[1]
        text = self.embed_tokens(input_ids)
        n_pad = (attention_mask == 0).sum(dim=1, keepdim=True)  # BOS sits at column n_pad
        cols = torch.arange(length + n_patch, device=input_ids.device).expand(batch, -1)
        is_patch = (cols > n_pad) & (cols <= n_pad + n_patch)
        text_src = torch.where(cols <= n_pad, cols, cols - n_patch).clamp(0, length - 1)
        patch_src = (cols - n_pad - 1).clamp(0, n_patch - 1)
        hidden = text.shape[-1]
        text_part = text.gather(1, text_src.unsqueeze(-1).expand(-1, -1, hidden))
        patch_part = patch_embeds.to(text.dtype).gather(
            1, patch_src.unsqueeze(-1).expand(-1, -1, hidden)
        )
        embeds = torch.where(is_patch.unsqueeze(-1), patch_part, text_part)
        text_mask = attention_mask.gather(1, text_src)
        mask = torch.where(is_patch, torch.ones_like(text_mask), text_mask)
        return embeds, mask, self.position_ids(mask)

    @staticmethod
    def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
        """Positions counting attended tokens only: ``cumsum(mask) - 1`` (0 on pads)."""
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    def backbone(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *,
        cache: Any = None,
        use_cache: bool = False,
    ) -> Any:
        """Run the Llama decoder (no head); returns transformers' ``BaseModelOutputWithPast``."""
        return self.language_model.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the 256 action ids only (index ``j`` = token ``31744 + j``), ``[..., 256]``."""
        start, end = self.config.action_token_ids
        weight = self.language_model.get_output_embeddings().weight[start:end]
        return torch.nn.functional.linear(hidden, weight)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Full-vocabulary logits ``[B, L+P, vocab]`` of ``[BOS, patches, rest of input_ids]``."""
        embeds, mask, pos = self.assemble(
            input_ids, attention_mask, self.embed_images(pixel_values)
        )
        hidden = self.backbone(embeds, mask, pos).last_hidden_state
        return self.language_model.lm_head(hidden)

    # -- switches ------------------------------------------------------------------------
    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Switch activation checkpointing in the LLM and both ViTs (non-reentrant)."""
        if enabled:
            self.language_model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            self.language_model.activation_checkpointing_disable()
        self.vision_backbone.featurizer.set_grad_checkpointing(enabled)
        self.vision_backbone.fused_featurizer.set_grad_checkpointing(enabled)
