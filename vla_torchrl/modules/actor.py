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
actor offers what TorchRL calls on probabilistic actors instead: :meth:`OpenVLAActor.get_dist`
(an :class:`~vla_torchrl.modules.distribution.ActionTokenDistribution`: autoregressive
``sample()``, teacher-forced ``log_prob``), :meth:`OpenVLAActor.log_prob`, ``set_keys``, and it
follows ``set_exploration_type``: ``DETERMINISTIC`` / ``MODE`` / ``MEAN`` decode greedily,
``RANDOM`` (the Collector's default) and no setting keep the actor's own ``mode``. The
teacher-forced evaluator gives the log-probs, entropies and values losses need in one pass.

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
from tensordict.nn import InteractionType, TensorDictModuleBase
from tensordict.nn.probabilistic import interaction_type
from tensordict.utils import NestedKey

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
    _rename_keys,
    check_shared_head,
    select_critic_input,
    write_critic_value,
)
from vla_torchrl.modules.distribution import (
    ActionTokenDistribution,
    GenerationOutput,
    generate_action_tokens,
)
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.passes import prefix_inputs
from vla_torchrl.modules.processors.bundle import OpenVLAProcessor, read_observation

__all__ = ["GenerationOutput", "OpenVLAActor", "generate_action_tokens"]


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

    def set_keys(self, **keys: NestedKey) -> OpenVLAActor:
        """Rename the keys read: ``image``, ``instruction``; returns ``self``.

        Examples (the actor of the module docstring)::

            actor.set_keys(image=("pixels", "rgb"), instruction="task")
        """
        _rename_keys(self, keys, ("image", "instruction"))
        self.in_keys = [self.image_key, self.instruction_key]
        return self

    def decoding_mode(self) -> Literal["sample", "greedy"]:
        """The decoding used now: greedy under ``set_exploration_type(DETERMINISTIC | MODE |
        MEAN)``, else :attr:`mode`."""
        current = interaction_type()
        if current in (InteractionType.DETERMINISTIC, InteractionType.MODE, InteractionType.MEAN):
            return "greedy"
        return self.mode

    def get_dist(self, tensordict: TensorDictBase) -> ActionTokenDistribution:
        """The action distribution at the observations of ``tensordict`` (TorchRL's API).

        ``sample()`` generates tokens (KV cache, no gradient), ``log_prob(tokens)`` scores
        ``ACTION_TOKENS_KEY`` ``[*B, 7]`` teacher-forced (with gradients), ``entropy()`` sums the
        per-token entropies along those tokens, ``mode`` decodes greedily. With TorchRL's
        ``ClipPPOLoss``: ``set_keys(action=ACTION_TOKENS_KEY)`` (README "TorchRL interop").
        """
        images, texts = read_observation(tensordict, self.image_key, self.instruction_key)
        return ActionTokenDistribution(
            self.model,
            self.processor,
            images,
            texts,
            batch_shape=tensordict.batch_size,
            temperature=self.temperature,
            use_cache=self.use_cache,
            generator=self.generator,
        )

    def log_prob(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Teacher-forced log-prob ``[*B]`` of the tensordict's ``ACTION_TOKENS_KEY`` (Eq. 1)."""
        tokens = tensordict.get(ACTION_TOKENS_KEY, None)
        if tokens is None:
            raise KeyError(
                f"OpenVLAActor.log_prob needs {ACTION_TOKENS_KEY!r} (int64 [*B, 7]) in its input; "
                "run the actor first or store the tokens of the actions to score"
            )
        return self.get_dist(tensordict).log_prob(tokens)

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
            mode=self.decoding_mode(),
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
