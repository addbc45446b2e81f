"""The policy's action distribution as a ``torch.distributions.Distribution`` (TorchRL interop).

One action is 7 tokens drawn autoregressively (token ``k`` conditions on tokens ``< k``), each
from the softmax of the 256 action logits at the policy's temperature. No closed-form object of
``torch.distributions`` describes that, so :class:`ActionTokenDistribution` implements the
three calls TorchRL's losses and modules make, on one batch of observations:

* ``sample()``: the actor's KV-cached generation (no gradient), token ids ``[*B, 7]``;
* ``log_prob(tokens)``: the teacher-forced log-prob of given tokens, summed over the 7 (Eq. 1),
  ``[*B]``, with gradients (one forward, the evaluator's);
* ``entropy()``: the sum of the 7 per-token entropies along the tokens last given to
  ``log_prob`` (the quantity ``VLAPPOLoss`` logs as ``entropy``; the joint entropy over 256^7
  sequences has no closed form);
* ``mode`` / ``deterministic_sample``: greedy tokens (argmax at every step).

:meth:`~vla_torchrl.modules.OpenVLAActor.get_dist` builds it for a tensordict.

Examples:
    >>> import torch
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> from vla_torchrl.modules.openvla import OpenVLA
    >>> from vla_torchrl.modules.processors import OpenVLAProcessor
    >>> cfg = OpenVLAConfig.tiny()
    >>> model, proc = OpenVLA(cfg), OpenVLAProcessor.from_config(cfg, text_tokenizer="builtin")
    >>> dist = ActionTokenDistribution(model, proc, torch.zeros(2, 32, 32, 3, dtype=torch.uint8),
    ...                                ["pick", "stack"], batch_shape=torch.Size([2]))
    >>> tokens = dist.sample()
    >>> tokens.shape, dist.log_prob(tokens).shape, dist.entropy().shape
    (torch.Size([2, 7]), torch.Size([2]), torch.Size([2]))
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import distributions as D
from transformers import DynamicCache

from vla_torchrl.errors import UserError
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.passes import (
    entropy,
    prefix_inputs,
    restricted_log_probs,
    teacher_forced_hidden,
)
from vla_torchrl.modules.processors.bundle import OpenVLAProcessor
from vla_torchrl.utils.fake import has_data

__all__ = [
    "ActionTokenDistribution",
    "GenerationOutput",
    "generate_action_tokens",
    "score_action_tokens",
]

GenerationOutput = dict[str, torch.Tensor]


@torch.no_grad()
def generate_action_tokens(
    model: OpenVLA,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    *,
    temperature: float = 1.0,
    mode: Literal["sample", "greedy"] = "sample",
    use_cache: bool = True,
    feed_last: bool = False,
    generator: torch.Generator | None = None,
) -> GenerationOutput:
    """Generate ``config.action_dim`` action tokens from a prefix.

    Args:
        model: the OpenVLA.
        inputs_embeds, attention_mask, position_ids: the left-padded prefix
            (:func:`~vla_torchrl.modules.passes.prefix_inputs`).
        temperature: softmax temperature of the restricted distributions.
        mode: ``"sample"`` or ``"greedy"`` (argmax).
        use_cache: KV cache (one prefill + cached steps) or full recompute each step (tests).
        feed_last: also run the last token through (one more step) to get h^n.
        generator: optional RNG for sampling.

    Returns:
        dict with ``tokens`` (int64 ids ``[N, 7]``), ``log_probs`` ``[N, 7]`` (float32) and
        ``hidden`` ``[N, 7 (+1), H]`` (h^0.., detached).
    """
    first_id = model.config.action_token_ids[0]
    n_steps = model.config.action_dim
    cache = DynamicCache() if use_cache else None
    embeds, mask, pos = inputs_embeds, attention_mask, position_ids
    # one host check per call (not per token): without left padding the causal mask alone is
    # exact, and transformers then skips building a padding mask at every step (fake / meta
    # tensors, memory planning: assume padding, the larger case)
    padded = bool((mask == 0).any()) if has_data(mask) else True
    out = model.backbone(embeds, mask if padded else None, pos, cache=cache, use_cache=use_cache)
    h = out.last_hidden_state[:, -1]
    hiddens, tokens, log_probs = [h], [], []
    for step in range(n_steps):
        logp = restricted_log_probs(model.action_logits(h), temperature=temperature)
        if mode == "greedy":
            idx = logp.argmax(-1)
        else:
            try:
                idx = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
            except RuntimeError as err:  # NaN / inf probabilities: no host check per token
                if "probability tensor contains" not in str(err):
                    raise
                raise UserError(
                    "the policy's action logits are not finite (NaN or inf) while sampling: "
                    "training diverged (e.g. optim.lr too high); continue from a checkpoint "
                    "before the divergence with a lower rate (resume=<its step> optim.lr=...)"
                ) from err
        tokens.append(idx + first_id)
        log_probs.append(logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1))
        if step == n_steps - 1 and not feed_last:
            break
        new = model.embed_tokens(tokens[-1].unsqueeze(1))
        new_mask = torch.ones_like(mask[:, :1])
        new_pos = pos[:, -1:] + 1
        mask = torch.cat([mask, new_mask], dim=1)
        step_mask = mask if padded else None
        if use_cache:
            pos = new_pos
            out = model.backbone(new, step_mask, pos, cache=cache, use_cache=True)
        else:
            embeds = torch.cat([embeds, new], dim=1)
            pos = torch.cat([pos, new_pos], dim=1)
            out = model.backbone(embeds, step_mask, pos)
        h = out.last_hidden_state[:, -1]
        hiddens.append(h)
    return {
        "tokens": torch.stack(tokens, dim=1),
        "log_probs": torch.stack(log_probs, dim=1),
        "hidden": torch.stack(hiddens, dim=1),
    }


def score_action_tokens(
    model: OpenVLA,
    processor: OpenVLAProcessor,
    images: torch.Tensor,
    texts: list[str],
    tokens: torch.Tensor,
    *,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forced ``(token log-probs [N, 7], token entropies [N, 7], hidden [N, 8, H])``.

    One forward over ``[BOS, patches, prompt, a_1 .. a_7]``; log-probs and entropies of the
    restricted (256 action ids) distributions at ``temperature``. Raises ValueError when a token
    is not an action token.
    """
    n_steps = model.config.action_dim
    tokens = tokens.reshape(len(texts), n_steps).long()
    first, end = model.config.action_token_ids
    # the range check reads values: skipped for fake / meta tensors (memory planning)
    if tokens.numel() and has_data(tokens) and (tokens.min() < first or tokens.max() >= end):
        raise ValueError(
            f"action tokens must lie in [{first}, {end}) (the 256 action ids), got range "
            f"[{int(tokens.min())}, {int(tokens.max())}]."
        )
    hidden = teacher_forced_hidden(model, processor, images, texts, tokens)
    logp = restricted_log_probs(model.action_logits(hidden[:, :n_steps]), temperature=temperature)
    idx = (tokens - first).to(logp.device).unsqueeze(-1)
    return logp.gather(-1, idx).squeeze(-1), entropy(logp), hidden


class ActionTokenDistribution(D.Distribution):
    """The 7-token action distribution of a batch of observations (see the module docstring).

    Args:
        model: the OpenVLA.
        processor: image / prompt / action processing.
        images: uint8 ``[N, H, W, 3]`` frames.
        texts: ``N`` instructions.
        batch_shape: the tensordict's batch shape (``prod = N``).
        temperature: the softmax temperature of every token's distribution.
        use_cache: KV-cached generation in :meth:`sample`.
        generator: optional sampling RNG.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        model: OpenVLA,
        processor: OpenVLAProcessor,
        images: torch.Tensor,
        texts: list[str],
        *,
        batch_shape: torch.Size,
        temperature: float = 1.0,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.model, self.processor = model, processor
        self.images, self.texts = images, texts
        self.temperature = float(temperature)
        self.use_cache = use_cache
        self.generator = generator
        self._entropy: torch.Tensor | None = None
        super().__init__(
            batch_shape=torch.Size(batch_shape),
            event_shape=torch.Size([model.config.action_dim]),
            validate_args=False,
        )

    def _generate(self, mode: str) -> torch.Tensor:
        embeds, mask, pos = prefix_inputs(self.model, self.processor, self.images, self.texts)
        out = generate_action_tokens(
            self.model,
            embeds,
            mask,
            pos,
            temperature=self.temperature,
            mode=mode,
            use_cache=self.use_cache,
            generator=self.generator,
        )
        return out["tokens"].reshape(*self.batch_shape, -1)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Token ids ``[*sample_shape, *B, 7]`` drawn autoregressively (no gradient)."""
        sample_shape = torch.Size(sample_shape)
        draws = [self._generate("sample") for _ in range(sample_shape.numel())]
        return torch.stack(draws).reshape(*sample_shape, *self.batch_shape, -1)

    @property
    def mode(self) -> torch.Tensor:
        """Greedy tokens (argmax at each of the 7 steps), ``[*B, 7]``."""
        with torch.no_grad():
            return self._generate("greedy")

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """What TorchRL's ``ExplorationType.DETERMINISTIC`` uses: :attr:`mode`."""
        return self.mode

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-prob of token ids ``[*B, 7]``, summed over the 7 (Eq. 1): ``[*B]``."""
        if value.dtype.is_floating_point:
            raise TypeError(
                "ActionTokenDistribution.log_prob takes action token ids (int64 [*B, 7], "
                f"ACTION_TOKENS_KEY), got {value.dtype}; point the loss at them, e.g. "
                "ClipPPOLoss(...).set_keys(action=ACTION_TOKENS_KEY)"
            )
        token_lp, token_entropy, _ = score_action_tokens(
            self.model,
            self.processor,
            self.images,
            self.texts,
            value,
            temperature=self.temperature,
        )
        self._entropy = token_entropy.sum(-1).reshape(self.batch_shape)
        return token_lp.sum(-1).reshape(self.batch_shape)

    def entropy(self) -> torch.Tensor:
        """Sum of the 7 per-token entropies along the tokens last scored by :meth:`log_prob`."""
        if self._entropy is None:
            raise RuntimeError(
                "ActionTokenDistribution.entropy() is the sum of the per-token entropies along "
                "given tokens (the joint entropy over 256^7 sequences has no closed form); call "
                "log_prob(tokens) first"
            )
        return self._entropy
