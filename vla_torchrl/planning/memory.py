"""Peak memory of one update step and one rollout step, by category, on fake tensors.

The model is built on ``meta`` (no memory), its parameters and buffers are then replaced by fake
tensors (``FakeTensorMode``; ``to_empty`` from meta into fake fails, FACTS.md), and the project's
own code runs on them: the loss (:class:`~vla_torchrl.objectives.VLAPPOLoss` & co. calling the
teacher-forced evaluator) forward + backward in training mode
(:func:`~vla_torchrl.modules.train_mode.update_mode`, as ``run_update`` does), gradient clipping
and the AdamW step; then the rollout actor (one prefill + 7 KV-cached decode steps at
``num_envs``, with the separate critic's pass where there is one). A
:class:`~vla_torchrl.planning.counter.LiveStorageCounter` records the live bytes.

What the figures are:

- **update**: the peak of one optimizer step in steady state. AdamW's state exists (earlier
  steps made it); with ``grad_accum_steps > 1`` the gradients of earlier minibatches of the step
  are live too, so the minibatch measured is a later one of the step (the largest case). With
  ``verify_steps`` (``optim.verify_steps``) the copies of the trainable weights and AdamW state
  that can undo the step (``step_snapshot``, 3x the trainable weights) are live through the step
  and the no-grad forward that checks it.
- **rollout**: the peak of one actor call on ``num_envs`` frames under ``no_grad``; the
  optimizer state and the last update's gradients are still allocated then (``run_update`` frees
  gradients at the start of the next step), so they are part of it.

Fake CPU tensors run the CPU kernels' shape logic (SDPA: the flash kernel, memory like the GPU
kernels). Checked on real CPU tensors against glibc's allocator (:mod:`.validate`).

Examples:
    >>> from vla_torchrl.modules import LoRASettings
    >>> est = estimate_memory(model_source="tiny", policy_kwargs={"lora": LoRASettings(rank=4),
    ...     "critic": "shared", "text_tokenizer": "builtin"}, minibatch_size=2, num_envs=2,
    ...     frame_hw=(32, 32))
    >>> sorted(est.update)
    ['activations', 'frozen_weights', 'gradients', 'optimizer_state', 'step_snapshot', 'trainable_weights']
    >>> est.update_peak > est.update["frozen_weights"] > 0
    True
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from tensordict import TensorDict
from torch import nn

from vla_torchrl.keys import (
    ACTION_LOG_PROB_KEY,
    ACTION_TOKENS_KEY,
    ADVANTAGE_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    REF_ACTION_LOG_PROB_KEY,
    VALUE_KEY,
    VALUE_TARGET_KEY,
)
from vla_torchrl.modules import OpenVLAConfig, PolicyBundle, build_policy
from vla_torchrl.modules.train_mode import update_mode
from vla_torchrl.objectives import VLAGRPOLoss, VLAPPOLoss, VLASFTLoss
from vla_torchrl.planning.counter import LiveStorageCounter

__all__ = [
    "CATEGORIES",
    "PLAN_INSTRUCTIONS",
    "MemoryEstimate",
    "estimate_memory",
    "fake_policy",
    "policy_tensors",
    "synthetic_batch",
]

#: Categories of the breakdown, in display order.
CATEGORIES = (
    "frozen_weights",
    "trainable_weights",
    "optimizer_state",
    "gradients",
    "step_snapshot",
    "activations",
)
#: Instructions of the synthetic batches: "put O on R" prompts of the paper's lengths (mixed
#: lengths, so the batch is left-padded as a real rollout's is).
PLAN_INSTRUCTIONS = (
    "put the carrot on the plate",
    "put the eggplant on the plate",
    "put the green cube on the plate",
    "put the spoon on the plate",
)
LossKind = Literal["ppo", "grpo", "sft"]


@dataclass
class MemoryEstimate:
    """Peaks in bytes by category (``update`` / ``rollout``: ``{category: bytes}``).

    Attributes:
        update, rollout: the breakdown at each peak (categories: :data:`CATEGORIES`).
        update_peak, rollout_peak: the peaks (sums of the breakdowns).
        sequence_length: tokens per sample of the update's forward (prefix + 7 action tokens).
        parameters: ``{"frozen": n, "trainable": n}`` parameter counts.
        decoder: bytes of the LLM decoder layers' parameters, gradients and optimizer state
            (what FSDP2 over N ranks shards; see :mod:`.advice`).
        largest_layer_bytes: the largest decoder layer's parameter bytes (FSDP2 all-gather).
        seconds: wall time of the estimate.
    """

    update: dict[str, int]
    rollout: dict[str, int]
    sequence_length: int
    parameters: dict[str, int]
    decoder: dict[str, int] = field(default_factory=dict)
    largest_layer_bytes: int = 0
    seconds: float = 0.0

    @property
    def update_peak(self) -> int:
        return sum(self.update.values())

    @property
    def rollout_peak(self) -> int:
        return sum(self.rollout.values())

    @property
    def peak(self) -> int:
        """The step that decides whether a run fits: the larger of the two."""
        return max(self.update_peak, self.rollout_peak)

    def to_dict(self) -> dict[str, Any]:
        return {
            "update": dict(self.update),
            "update_peak": self.update_peak,
            "rollout": dict(self.rollout),
            "rollout_peak": self.rollout_peak,
            "peak": self.peak,
            "sequence_length": self.sequence_length,
            "parameters": dict(self.parameters),
            "decoder": dict(self.decoder),
            "largest_layer_bytes": self.largest_layer_bytes,
            "seconds": round(self.seconds, 2),
        }


# -- building -----------------------------------------------------------------------------------
def _bundle_roots(bundle: PolicyBundle) -> list[nn.Module]:
    roots = [bundle.peft_model or bundle.model]
    if bundle.critic is not None:
        roots.append(bundle.critic)
    return roots


def _fakify(bundle: PolicyBundle) -> None:
    """Replace every parameter / buffer (on ``meta``) by an empty tensor of the current mode.

    Parameter objects are replaced (``nn.Module._apply`` would give FakeTensors that are not
    ``Parameter``s), shared ones once, and the optimizer groups are pointed at the new ones.
    """
    memo: dict[int, torch.Tensor] = {}

    def fresh(t: torch.Tensor) -> torch.Tensor:
        return torch.empty(t.shape, dtype=t.dtype, device="cpu")

    for root in _bundle_roots(bundle):
        for module in root.modules():
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                if id(param) not in memo:
                    memo[id(param)] = nn.Parameter(fresh(param), requires_grad=param.requires_grad)
                module._parameters[name] = memo[id(param)]
            for name, buf in list(module._buffers.items()):
                if buf is not None:
                    module._buffers[name] = memo.setdefault(id(buf), fresh(buf))
    bundle.param_groups = [
        {**group, "params": [memo[id(p)] for p in group["params"]]} for group in bundle.param_groups
    ]


def fake_policy(
    fake_mode: Any, model_source: Literal["tiny", "random"] = "tiny", **policy_kwargs: Any
) -> PolicyBundle:
    """``build_policy(model_source, device="meta", ...)``, then fake parameters of ``fake_mode``.

    The build runs outside the fake mode (timm reads values while building: drop-path rates);
    only the empty tensors that replace the meta ones are made inside it (and counted by any
    dispatch mode active then).

    Args:
        fake_mode: a ``FakeTensorMode`` (entered here for the replacement only).
        model_source: ``"tiny"`` or ``"random"`` (the 7B layout, or ``config=`` / ``overrides=``).
        policy_kwargs: the other :func:`~vla_torchrl.modules.build_policy` arguments.
    """
    kwargs = {**policy_kwargs, "device": "meta"}
    bundle = build_policy(model_source, **kwargs)
    with fake_mode:
        _fakify(bundle)
    return bundle


def policy_tensors(bundle: PolicyBundle) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(frozen, trainable)``: frozen parameters and buffers, trainable parameters.

    Trainable means updated by the optimizer: a parameter that requires grad but is in none of
    ``bundle.param_groups`` (the towers and projector under ``freeze_vision``, the token embedding
    under ``freeze_token_embedding``: both run under ``no_grad``) has no gradient and no AdamW
    state, so it counts as a frozen weight.
    """
    optimized = {id(p) for group in bundle.param_groups for p in group["params"]}
    frozen: dict[int, torch.Tensor] = {}
    trainable: dict[int, torch.Tensor] = {}
    for root in _bundle_roots(bundle):
        for p in root.parameters():
            (trainable if p.requires_grad and id(p) in optimized else frozen)[id(p)] = p
        for b in root.buffers():
            frozen[id(b)] = b
    return list(frozen.values()), list(trainable.values())


# -- synthetic data -----------------------------------------------------------------------------
def synthetic_batch(
    config: OpenVLAConfig,
    n: int,
    *,
    frame_hw: tuple[int, int] = (480, 640),
    instructions: tuple[str, ...] = PLAN_INSTRUCTIONS,
    with_training_keys: bool = True,
) -> TensorDict:
    """``n`` transitions of the shapes a rollout stores (frames at ``frame_hw``, uint8).

    With ``with_training_keys`` also action tokens, behaviour / reference log-probs, advantages,
    old values and value targets (what the losses read). Values are arbitrary but valid.
    """
    first, end = config.action_token_ids
    action_dim = config.action_dim
    frames = torch.zeros(n, *frame_hw, 3, dtype=torch.uint8)
    td = TensorDict({IMAGE_KEY: frames}, [n])
    td[INSTRUCTION_KEY] = [instructions[i % len(instructions)] for i in range(n)]
    if with_training_keys:
        td.set(ACTION_TOKENS_KEY, torch.full((n, action_dim), (first + end) // 2))
        td.set(ACTION_LOG_PROB_KEY, torch.zeros(n))
        td.set(REF_ACTION_LOG_PROB_KEY, torch.zeros(n))
        td.set(ADVANTAGE_KEY, torch.ones(n, 1))
        td.set(VALUE_KEY, torch.zeros(n, 1))
        td.set(VALUE_TARGET_KEY, torch.ones(n, 1))
    return td


def _loss(kind: LossKind, bundle: PolicyBundle) -> nn.Module:
    if kind == "ppo":
        # statistics fixed: a minibatch of 1 has no std (the recipe uses the rollout's)
        loss = VLAPPOLoss(bundle.evaluator, critic_coeff=0.5 if bundle.critic is not None else None)
        loss.advantage_stats_fn = lambda adv, mask=None: (adv.new_zeros(()), adv.new_ones(()))
        return loss
    if kind == "grpo":
        loss = VLAGRPOLoss(bundle.evaluator)
        loss.advantage_stats_fn = lambda adv, mask=None: (adv.new_zeros(()), adv.new_ones(()))
        return loss
    if kind == "sft":
        return VLASFTLoss(bundle.evaluator)
    raise ValueError(f"loss={kind!r} is not one the planner runs; use 'ppo', 'grpo' or 'sft'")


# -- the steps ----------------------------------------------------------------------------------
def _autocast(mode: str, device_type: str = "cpu"):
    if mode == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _prepare_optimizer(
    optimizer: torch.optim.Optimizer, trainable: list[torch.Tensor], *, keep_grads: bool
) -> None:
    """Steady state before the measured step: AdamW's state made by one step on zero gradients;
    gradients kept (as after earlier minibatches of an accumulation) or dropped."""
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    if not keep_grads:
        optimizer.zero_grad(set_to_none=True)


def _update_step(
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainable: list[torch.Tensor],
    batch: TensorDict,
    *,
    accumulation: int,
    max_grad_norm: float | None,
    autocast: str,
    verify_steps: bool = False,
) -> list[torch.Tensor]:
    """One minibatch forward + backward (in training mode), clipping and the optimizer step, as
    :func:`vla_torchrl.training.update.run_update` runs them; with ``verify_steps`` also its
    snapshot (copies of the weights and optimizer state, returned so the caller can attribute
    them) and the no-grad forward that checks the step."""
    device_type = trainable[0].device.type if trainable else "cpu"
    with update_mode(loss_fn):
        with _autocast(autocast, device_type):
            losses = loss_fn(batch)
        terms = [v for k, v in losses.items() if k.startswith("loss_")]
        loss = sum(terms).float()
        (loss / accumulation).backward()
    del losses, terms, loss
    norm = max_grad_norm if max_grad_norm is not None else float("inf")
    torch.nn.utils.clip_grad_norm_(trainable, norm, foreach=True)
    snapshot: list[torch.Tensor] = []
    if verify_steps:
        snapshot = [p.detach().clone() for p in trainable] + [
            v.clone() for v in _state_tensors(optimizer)
        ]
    optimizer.step()
    if verify_steps:
        with torch.no_grad(), update_mode(loss_fn), _autocast(autocast, device_type):
            check = loss_fn(batch)
        del check
    return snapshot


def _state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FakeTensor data_ptr deprecation on deepcopy etc.
        yield


def _decoder_tensors(bundle: PolicyBundle) -> list[nn.Module]:
    layers = [bundle.model.language_model.model.layers]
    critic_model = getattr(bundle.critic, "model", None)
    if critic_model is not None:
        layers.append(critic_model.language_model.model.layers)
    return [layer for stack in layers for layer in stack]


def _sizes(tensors, counter: LiveStorageCounter) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = t.untyped_storage()._cdata
        if key not in seen:
            seen.add(key)
            total += counter._round(t.untyped_storage().nbytes())
    return total


def _categorise(
    counter: LiveStorageCounter,
    frozen: list[torch.Tensor],
    trainable: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    snapshot: list[torch.Tensor] = (),
) -> dict[str, int]:
    grads = [p.grad for p in trainable if p.grad is not None]
    raw = counter.peak_by_category(
        {
            "frozen_weights": frozen,
            "trainable_weights": trainable,
            "optimizer_state": _state_tensors(optimizer),
            "gradients": grads,
            "step_snapshot": snapshot,
        }
    )
    raw["activations"] = raw.pop("other")
    return {name: raw[name] for name in CATEGORIES}


def run_steps(
    bundle: PolicyBundle,
    counter: LiveStorageCounter,
    *,
    loss: LossKind = "ppo",
    minibatch_size: int = 8,
    grad_accum_steps: int = 20,
    num_envs: int = 64,
    frame_hw: tuple[int, int] = (480, 640),
    max_grad_norm: float | None = 10.0,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    autocast: Literal["none", "bf16"] = "none",
    instructions: tuple[str, ...] = PLAN_INSTRUCTIONS,
    verify_steps: bool = False,
) -> tuple[dict[str, int], dict[str, int], int]:
    """Run the update step, then the rollout step, on ``bundle`` (fake or real tensors) inside
    ``counter``; returns ``(update breakdown, rollout breakdown, sequence length)``."""
    frozen, trainable = policy_tensors(bundle)
    counter.track_all(frozen + trainable)
    # foreach=True: what AdamW picks on CUDA (its temporaries are part of the peak)
    optimizer = torch.optim.AdamW(
        bundle.param_groups, betas=betas, weight_decay=weight_decay, foreach=True
    )
    loss_fn = _loss(loss, bundle)
    _prepare_optimizer(optimizer, trainable, keep_grads=grad_accum_steps > 1)
    config = bundle.model.config
    device = bundle.model.projector.fc1.weight.device
    batch = synthetic_batch(config, minibatch_size, frame_hw=frame_hw, instructions=instructions)
    batch = batch.to(device)
    counter.reset_peak()
    snapshot = _update_step(
        loss_fn,
        optimizer,
        trainable,
        batch,
        accumulation=grad_accum_steps,
        max_grad_norm=max_grad_norm,
        autocast=autocast,
        verify_steps=verify_steps,
    )
    update = _categorise(counter, frozen, trainable, optimizer, snapshot)
    del snapshot  # freed before the rollout, as run_update frees it after the step
    processor = bundle.processor
    ids, _ = processor.prompt_tokenizer(list(batch[INSTRUCTION_KEY]), device="cpu")
    seq_len = ids.shape[1] + bundle.model.config.num_patches + bundle.model.config.action_dim
    del batch
    frames = synthetic_batch(
        config, num_envs, frame_hw=frame_hw, instructions=instructions, with_training_keys=False
    ).to(device)
    counter.reset_peak()
    with torch.no_grad():
        bundle.actor(frames)
    rollout = _categorise(counter, frozen, trainable, optimizer)
    return update, rollout, seq_len


def estimate_memory(
    *,
    model_source: Literal["tiny", "small", "random"] = "tiny",
    policy_kwargs: dict[str, Any] | None = None,
    loss: LossKind = "ppo",
    minibatch_size: int = 8,
    grad_accum_steps: int = 20,
    num_envs: int = 64,
    frame_hw: tuple[int, int] = (480, 640),
    max_grad_norm: float | None = 10.0,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    autocast: Literal["none", "bf16"] = "none",
    verify_steps: bool = False,
    round_to: int = 512,
) -> MemoryEstimate:
    """Estimate the peaks of one update step and one rollout step with fake tensors.

    Args:
        model_source: ``"tiny"``, ``"small"`` (``overrides=`` in ``policy_kwargs`` resizes
            them, as ``model.arch``) or ``"random"`` (7B layout; pass ``config=`` in
            ``policy_kwargs`` for another architecture, e.g. a checkpoint's ``config.json``).
        policy_kwargs: :func:`~vla_torchrl.modules.build_policy` arguments (``lora``,
            ``critic``, ``critic_input``, ``dtype``, ``gradient_checkpointing``, ...).
        loss: ``"ppo"`` (PPO, PPO-ORZ), ``"grpo"`` (GRPO, GRPO(s)) or ``"sft"``.
        minibatch_size, grad_accum_steps: as in ``optim`` (accumulation keeps gradients live).
        num_envs, frame_hw: the rollout step's batch and frame size (the paper: 64, 480 x 640).
        max_grad_norm, betas, weight_decay: as in ``optim``.
        autocast: ``"bf16"``: the loss forward under ``torch.autocast``.
        verify_steps: count ``optim.verify_steps``' snapshot and check forward.
        round_to: allocation granularity (512: CUDA caching allocator).

    Returns:
        a :class:`MemoryEstimate`.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    start = time.perf_counter()
    kwargs = {"text_tokenizer": "auto", **(policy_kwargs or {})}
    counter = LiveStorageCounter(round_to=round_to)
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    with _quiet():
        bundle = build_policy(model_source, **{**kwargs, "device": "meta"})
    with _quiet(), fake_mode, counter:
        _fakify(bundle)
        update, rollout, seq_len = run_steps(
            bundle,
            counter,
            loss=loss,
            minibatch_size=minibatch_size,
            grad_accum_steps=grad_accum_steps,
            num_envs=num_envs,
            frame_hw=frame_hw,
            max_grad_norm=max_grad_norm,
            betas=betas,
            weight_decay=weight_decay,
            autocast=autocast,
            verify_steps=verify_steps,
        )
        frozen, trainable = policy_tensors(bundle)
        decoder = _decoder_breakdown(bundle, counter)
    return MemoryEstimate(
        update=update,
        rollout=rollout,
        sequence_length=seq_len,
        parameters={
            "frozen": sum(t.numel() for t in frozen if isinstance(t, nn.Parameter)),
            "trainable": sum(t.numel() for t in trainable),
        },
        decoder=decoder,
        largest_layer_bytes=max(
            (_sizes(layer.parameters(), counter) for layer in _decoder_tensors(bundle)), default=0
        ),
        seconds=time.perf_counter() - start,
    )


def _decoder_breakdown(bundle: PolicyBundle, counter: LiveStorageCounter) -> dict[str, int]:
    """Bytes of the decoder layers' frozen / trainable parameters (gradients and AdamW state are
    those of the trainable ones: 1x and 2x in the parameter dtype)."""
    frozen = trainable = 0
    for layer in _decoder_tensors(bundle):
        frozen += _sizes([p for p in layer.parameters() if not p.requires_grad], counter)
        trainable += _sizes([p for p in layer.parameters() if p.requires_grad], counter)
    return {"frozen_weights": frozen, "trainable_weights": trainable}
