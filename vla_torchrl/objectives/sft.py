"""Supervised fine-tuning on demonstrations (paper Sec. 3: "the cross-entropy loss is computed
solely on the predicted action tokens").

TorchRL's ``SFTLoss`` (``torchrl.objectives.llm``) expects chat histories and LLM wrappers; a
VLA demonstration is one observation and 7 action tokens, scored by the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey

from vla_torchrl.keys import EVAL_ENTROPY_KEY, EVAL_TOKEN_LOG_PROBS_KEY
from vla_torchrl.objectives import functional as F
from vla_torchrl.objectives._evaluator_loss import EvaluatorLossBase

__all__ = ["VLASFTLoss"]


class VLASFTLoss(EvaluatorLossBase):
    """Cross-entropy of the demonstrated action tokens.

    The evaluator scores the demonstration's ``ACTION_TOKENS_KEY`` ``[N, 7]`` (teacher
    forcing); ``loss_sft`` is the mean negative log-prob over steps and the 7 tokens
    (:func:`.functional.sft_token_nll`). Under the evaluator contract the log-probs are
    normalised over the **256 action ids**, so this is the cross-entropy restricted to the
    action vocabulary (the distribution the RL losses and the actor use). OpenVLA's original
    SFT normalises over the full 32064-token vocabulary; that variant needs raw logits:
    :func:`.functional.action_token_cross_entropy` with ``vocabulary="full"``.

    Input: ``[N]`` or ``[B, T]`` demonstrations with the evaluator's inputs; optional
    ``mask_key`` (bool, per step). Output: ``loss_sft`` and detached ``entropy``.

    Args:
        evaluator: teacher-forced evaluation module.
        mask_key: optional per-step validity mask (e.g. padded demonstration steps).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by :class:`VLASFTLoss`; rename with :meth:`set_keys`."""

        eval_token_log_probs: NestedKey = EVAL_TOKEN_LOG_PROBS_KEY
        eval_entropy: NestedKey = EVAL_ENTROPY_KEY

    def __init__(
        self, evaluator: TensorDictModuleBase, *, mask_key: NestedKey | None = None
    ) -> None:
        super().__init__(evaluator)
        self.mask_key = mask_key

    @property
    def in_keys(self) -> list[NestedKey]:
        return [*getattr(self.evaluator, "in_keys", [])] + (
            [self.mask_key] if self.mask_key is not None else []
        )

    @property
    def out_keys(self) -> list[NestedKey]:
        return ["loss_sft", "entropy"]

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        td = self._flat(tensordict)
        evaluated = self._evaluate(td)
        token_lp = self._require(evaluated, k.eval_token_log_probs)
        mask = None
        if self.mask_key is not None:
            mask = self._vector(
                self._require(td, self.mask_key), token_lp.shape[0], self.mask_key
            ).bool()
        out = TensorDict({"loss_sft": F.sft_token_nll(token_lp, mask)})
        entropy = evaluated.get(k.eval_entropy, None)
        if entropy is not None:
            out.set("entropy", F.masked_mean(entropy.sum(-1), mask).detach())
        return out
