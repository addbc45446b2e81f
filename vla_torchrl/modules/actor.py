"""Rollout actor: image + instruction -> 7 action tokens, continuous action, log-probs (Eq. 1).

Generation is batched with a KV cache: ONE prefill of ``[BOS, patches, prompt]`` then 7 cached
decode steps through ``LlamaModel.forward`` with a ``transformers.DynamicCache`` (no
``generate``, no host round-trip per token: sampling is ``torch.multinomial`` on the device).
Each step samples from the softmax of the 256 action logits only, at temperature ``T``
(``mode="greedy"``: argmax, log-probs still those of the tempered restricted distribution).
Greedy decoding differs from OpenVLA's own ``predict_action`` (argmax over the full vocabulary)
only when the full-vocabulary argmax is not an action token. Left-padded batches use position
ids from the attention mask, so a sample's result does not
depend on its batch mates.

Why a ``TensorDictModuleBase`` and not ``ProbabilisticActor`` / ``VLAWrapperBase``: both build
one distribution from one forward's logits, while the 7 tokens here are autoregressive (token
``k`` conditions on tokens ``< k``), so no single distribution object describes the action. The
actor exposes the same keys; the teacher-forced evaluator gives the log-probs losses need.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from vla_torchrl.keys import ACTION_KEY, ACTION_TOKENS_KEY, IMAGE_KEY, INSTRUCTION_KEY
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> from vla_torchrl.modules.openvla import OpenVLA
    >>> from vla_torchrl.modules.processors import OpenVLAProcessor
    >>> cfg = OpenVLAConfig.tiny()
    >>> actor = OpenVLAActor(OpenVLA(cfg), OpenVLAProcessor.from_config(cfg, text_tokenizer="builtin"))
    >>> td = TensorDict({IMAGE_KEY: torch.zeros(3, 32, 32, 3, dtype=torch.uint8)}, [3])
    >>> td[INSTRUCTION_KEY] = ["pick the cube", "open the drawer", "stack"]
    >>> td = actor(td)
    >>> td[ACTION_TOKENS_KEY].shape, bool(td[ACTION_TOKENS_KEY].ge(31744).all())
    (torch.Size([3, 7]), True)
    >>> td[ACTION_KEY].shape
    torch.Size([3, 7])
"""

from __future__ import annotations

from typing import Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from transformers import DynamicCache

from vla_torchrl.errors import UserError
from vla_torchrl.keys import (
    ACTION_KEY,
    ACTION_LOG_PROB_KEY,
    ACTION_TOKENS_KEY,
    HIDDEN_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    TOKEN_LOG_PROBS_KEY,
    VALUE_KEY,
)
from vla_torchrl.modules.critic import (
    CriticInput,
    SeparateBackboneCritic,
    ValueHead,
    check_shared_head,
    select_critic_input,
    write_critic_value,
)
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.passes import prefix_inputs, restricted_log_probs
from vla_torchrl.modules.processors.bundle import OpenVLAProcessor, read_observation
from vla_torchrl.utils.fake import has_data

__all__ = ["GenerationOutput", "OpenVLAActor", "generate_action_tokens"]

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


class OpenVLAActor(TensorDictModuleBase):
    """Rollout policy (TensorDict module) for a TorchRL collector.

    Reads ``IMAGE_KEY`` uint8 ``[*B, H, W, 3]`` and ``INSTRUCTION_KEY``; writes
    ``ACTION_TOKENS_KEY`` int64 ``[*B, 7]``, ``ACTION_KEY`` ``[*B, 7]`` (decoded, un-normalised),
    ``TOKEN_LOG_PROBS_KEY`` ``[*B, 7]``, ``ACTION_LOG_PROB_KEY`` ``[*B]`` (sum, Eq. 1),
    ``HIDDEN_KEY`` (critic input, detached; h^0 without critic) and, with a critic,
    ``VALUE_KEY`` ``[*B, 1]``.

    Args:
        model: the OpenVLA (possibly with LoRA adapters injected).
        processor: image / prompt / action processing.
        temperature: sampling temperature (1.0 in training, 0.6 in evaluation in the paper).
        mode: ``"sample"`` or ``"greedy"``.
        use_cache: KV-cached generation (default) or full recompute (for tests).
        critic: ``None``, a :class:`ValueHead` on this backbone's hidden states, or a
            :class:`SeparateBackboneCritic`.
        critic_input: ``"h0"``, ``"hn"`` or ``"concat"`` (shared-backbone head only).
        generator: optional RNG for sampling.
    """

    def __init__(
        self,
        model: OpenVLA,
        processor: OpenVLAProcessor,
        *,
        temperature: float = 1.0,
        mode: Literal["sample", "greedy"] = "sample",
        use_cache: bool = True,
        critic: ValueHead | SeparateBackboneCritic | None = None,
        critic_input: CriticInput = "h0",
        generator: torch.Generator | None = None,
        image_key: NestedKey = IMAGE_KEY,
        instruction_key: NestedKey = INSTRUCTION_KEY,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(
                f"OpenVLAActor.temperature={temperature} must be > 0; use mode='greedy' for argmax."
            )
        if mode not in ("sample", "greedy"):
            raise ValueError(f"OpenVLAActor.mode={mode!r} must be 'sample' or 'greedy'.")
        check_shared_head(critic, model.config, critic_input)
        self.model = model
        self.processor = processor
        self.temperature = float(temperature)
        self.mode = mode
        self.use_cache = use_cache
        self.critic = critic
        self.critic_input = critic_input
        self.generator = generator
        self.image_key, self.instruction_key = image_key, instruction_key
        self.in_keys = [image_key, instruction_key]
        self.out_keys = [
            ACTION_TOKENS_KEY,
            ACTION_KEY,
            TOKEN_LOG_PROBS_KEY,
            ACTION_LOG_PROB_KEY,
            HIDDEN_KEY,
        ] + ([VALUE_KEY] if critic is not None else [])

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        images, texts = read_observation(tensordict, self.image_key, self.instruction_key)
        embeds, mask, pos = prefix_inputs(self.model, self.processor, images, texts)
        shared = isinstance(self.critic, ValueHead)
        out = generate_action_tokens(
            self.model,
            embeds,
            mask,
            pos,
            temperature=self.temperature,
            mode=self.mode,
            use_cache=self.use_cache,
            feed_last=shared and self.critic_input != "h0",
            generator=self.generator,
        )
        batch = tensordict.batch_size
        tokens = out["tokens"]
        features = select_critic_input(out["hidden"], self.critic_input if shared else "h0")
        actions = self.processor.action_tokenizer.tokens_to_actions(tokens)
        tensordict.set(ACTION_TOKENS_KEY, tokens.reshape(*batch, -1))
        tensordict.set(ACTION_KEY, actions.reshape(*batch, -1))
        tensordict.set(TOKEN_LOG_PROBS_KEY, out["log_probs"].reshape(*batch, -1))
        tensordict.set(ACTION_LOG_PROB_KEY, out["log_probs"].sum(-1).reshape(batch))  # Eq. (1)
        tensordict.set(HIDDEN_KEY, features.detach().reshape(*batch, -1))
        write_critic_value(tensordict, self.critic, out["hidden"], self.critic_input)
        return tensordict
