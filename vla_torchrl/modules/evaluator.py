"""Evaluation pass for losses: ONE teacher-forced forward over prefix + the 7 given tokens.

From the forward over ``[BOS, patches, prompt, a_1 .. a_7]`` the evaluator reads the hidden
states h^0..h^7 (h^k predicts ``a_{k+1}``) and writes, restricted to the 256 action ids at the
sampling temperature: the log-prob of each given token (Eq. 1 summands) and the entropy of each
of the 7 distributions; with a shared-backbone critic also ``V(s)`` from h^0 (paper Sec. 4.2),
without a second backbone pass. Gradients flow (LoRA adapters, value head).

:meth:`OpenVLAEvaluator.reference` switches to the frozen starting policy: with LoRA the
adapters are disabled (peft ``disable_adapter()``); otherwise a ``reference_model`` must have
been given.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from vla_torchrl.keys import (ACTION_TOKENS_KEY, EVAL_ENTROPY_KEY, EVAL_TOKEN_LOG_PROBS_KEY,
    ...     IMAGE_KEY, INSTRUCTION_KEY)
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> from vla_torchrl.modules.openvla import OpenVLA
    >>> from vla_torchrl.modules.processors import OpenVLAProcessor
    >>> cfg = OpenVLAConfig.tiny()
    >>> ev = OpenVLAEvaluator(OpenVLA(cfg), OpenVLAProcessor.from_config(cfg, text_tokenizer="builtin"))
    >>> td = TensorDict({IMAGE_KEY: torch.zeros(2, 32, 32, 3, dtype=torch.uint8),
    ...                  ACTION_TOKENS_KEY: torch.full((2, 7), 31872)}, [2])
    >>> td[INSTRUCTION_KEY] = ["pick the cube", "stack"]
    >>> td = ev(td)
    >>> td[EVAL_TOKEN_LOG_PROBS_KEY].shape, bool((td[EVAL_ENTROPY_KEY] <= 5.546).all())
    (torch.Size([2, 7]), True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn

from vla_torchrl.keys import (
    ACTION_TOKENS_KEY,
    EVAL_ENTROPY_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    VALUE_KEY,
)
from vla_torchrl.modules.critic import (
    CriticInput,
    SeparateBackboneCritic,
    ValueHead,
    _rename_keys,
    check_shared_head,
    write_critic_value,
)
from vla_torchrl.modules.distribution import score_action_tokens
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.processors.bundle import OpenVLAProcessor, read_observation

__all__ = ["OpenVLAEvaluator"]


class OpenVLAEvaluator(TensorDictModuleBase):
    """Teacher-forced log-probs, entropies and values of stored action tokens.

    Args:
        model: the OpenVLA (the LoRA-injected one when training with adapters).
        processor: image / prompt / action processing (same as the actor's).
        temperature: the sampling temperature the log-probs refer to.
        critic: ``None``, a :class:`ValueHead` (shared backbone) or a
            :class:`SeparateBackboneCritic`.
        critic_input: ``"h0"`` (default), ``"hn"`` or ``"concat"`` for a shared head.
        peft_model: the ``PeftModel`` wrapping ``model`` (enables :meth:`reference`).
        reference_model: a frozen OpenVLA used by :meth:`reference` when there is no LoRA.
    """

    def __init__(
        self,
        model: OpenVLA,
        processor: OpenVLAProcessor,
        *,
        temperature: float = 1.0,
        critic: ValueHead | SeparateBackboneCritic | None = None,
        critic_input: CriticInput = "h0",
        peft_model: nn.Module | None = None,
        reference_model: OpenVLA | None = None,
        image_key: NestedKey = IMAGE_KEY,
        instruction_key: NestedKey = INSTRUCTION_KEY,
        action_tokens_key: NestedKey = ACTION_TOKENS_KEY,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"OpenVLAEvaluator.temperature={temperature} must be > 0.")
        check_shared_head(critic, model.config, critic_input)
        self.model = model
        self.processor = processor
        self.temperature = float(temperature)
        self.critic = critic
        self.critic_input = critic_input
        # kept out of the module tree: the peft wrapper holds `model` itself
        self.__dict__["_peft_model"] = peft_model
        self.__dict__["_reference_model"] = reference_model
        self._in_reference = False
        self.image_key, self.instruction_key = image_key, instruction_key
        self.action_tokens_key = action_tokens_key
        self.in_keys = [image_key, instruction_key, action_tokens_key]
        self.out_keys = [EVAL_TOKEN_LOG_PROBS_KEY, EVAL_ENTROPY_KEY] + (
            [VALUE_KEY] if critic is not None else []
        )

    @contextlib.contextmanager
    def reference(self) -> Iterator[OpenVLAEvaluator]:
        """Inside, outputs come from the frozen starting policy (LoRA adapters disabled)."""
        peft_model = self.__dict__["_peft_model"]
        reference_model = self.__dict__["_reference_model"]
        if peft_model is not None:
            with peft_model.disable_adapter():
                yield self
        elif reference_model is not None:
            policy = self.model
            self.model = reference_model
            try:
                yield self
            finally:
                self.model = policy
        else:
            raise RuntimeError(
                "OpenVLAEvaluator.reference(): no reference policy is available; build the "
                "evaluator with LoRA (peft_model=...) or pass reference_model=<frozen OpenVLA copy>."
            )

    def set_keys(self, **keys: NestedKey) -> OpenVLAEvaluator:
        """Rename the keys read: ``image``, ``instruction``, ``action_tokens``; returns ``self``."""
        _rename_keys(self, keys, ("image", "instruction", "action_tokens"))
        self.in_keys = [self.image_key, self.instruction_key, self.action_tokens_key]
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        images, texts = read_observation(tensordict, self.image_key, self.instruction_key)
        n_steps = self.model.config.action_dim
        token_logp, token_entropy, hidden = score_action_tokens(
            self.model,
            self.processor,
            images,
            texts,
            tensordict.get(self.action_tokens_key),
            temperature=self.temperature,
        )
        batch = tensordict.batch_size
        tensordict.set(EVAL_TOKEN_LOG_PROBS_KEY, token_logp.reshape(*batch, n_steps))
        tensordict.set(EVAL_ENTROPY_KEY, token_entropy.reshape(*batch, n_steps))
        write_critic_value(tensordict, self.critic, hidden, self.critic_input)
        return tensordict
