"""One call that recipes use to get a policy: model + processing + actor + evaluator + critic.

Loading a real checkpoint from a local directory (a copy of ``openvla/openvla-7b``: config.json,
the three safetensors shards and their index; nothing is downloaded) and predicting one action::

    import torch
    from tensordict import TensorDict
    from vla_torchrl.keys import ACTION_KEY, IMAGE_KEY, INSTRUCTION_KEY
    from vla_torchrl.modules import build_policy

    bundle = build_policy("checkpoint", checkpoint_path="/data/openvla-7b", lora=False,
                          critic="none", unnorm_key="bridge_orig", device="cuda",
                          dtype=torch.bfloat16)
    actor = bundle.eval_actor(mode="greedy")
    frame = torch.zeros(1, 480, 640, 3, dtype=torch.uint8)  # your RGB frame(s), uint8 HWC
    td = TensorDict({IMAGE_KEY: frame}, [1])
    td[INSTRUCTION_KEY] = ["put the carrot on the plate"]
    print(actor(td)[ACTION_KEY])  # [1, 7]: xyz delta, euler delta, gripper (bridge units)

The Llama-2 tokenizer is found through ``AssetPaths`` (``$VLA_TORCHRL_ASSETS`` or
``../shared/assets/llama2-tokenizer/tokenizer.model``); pass ``text_tokenizer=`` to override.

Examples:
    >>> bundle = build_policy("tiny", lora=LoRASettings(rank=4), critic="shared",
    ...                       text_tokenizer="builtin")
    >>> [g["name"] for g in bundle.param_groups]
    ['lora', 'value']
    >>> bundle.actor.out_keys[-1], bundle.evaluator.out_keys[-1]
    ('state_value', 'state_value')
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from vla_torchrl.modules.action_head_init import smooth_action_head_
from vla_torchrl.modules.actor import OpenVLAActor
from vla_torchrl.modules.checkpoint import load_openvla
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.critic import (
    CriticInput,
    SeparateBackboneCritic,
    ValueHead,
    critic_input_dim,
)
from vla_torchrl.modules.evaluator import OpenVLAEvaluator
from vla_torchrl.modules.lora import (
    LoRASettings,
    apply_lora,
    drop_unused_adapters,
    trainable_parameter_groups,
)
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.processors import ActionTokenizer, OpenVLAProcessor
from vla_torchrl.modules.processors.prompt import TextTokenizer

__all__ = ["PolicyBundle", "build_model", "build_policy"]

ModelSource = Literal["tiny", "small", "random", "checkpoint"]


@dataclass
class PolicyBundle:
    """Everything a recipe needs from the modules layer.

    Attributes:
        model: the OpenVLA the actor and evaluator call (LoRA layers injected when enabled).
        processor: image / prompt / action processing.
        actor: rollout :class:`OpenVLAActor` (sampling at ``temperature``).
        evaluator: teacher-forced :class:`OpenVLAEvaluator` (same temperature).
        critic: the value head / separate critic, or ``None``.
        peft_model: the ``PeftModel`` (save adapters with ``lora.save_adapters``), or ``None``.
        param_groups: optimizer groups (``lora`` lr 1e-4, ``value`` lr 3e-3, or ``model``).
        unnorm_key: the ``norm_stats`` entry actions are un-normalised with (None: the only
            one, or none at all).
    """

    model: OpenVLA
    processor: OpenVLAProcessor
    actor: OpenVLAActor
    evaluator: OpenVLAEvaluator
    critic: ValueHead | SeparateBackboneCritic | None
    peft_model: nn.Module | None
    param_groups: list[dict[str, Any]] = field(default_factory=list)
    unnorm_key: str | None = None

    def set_action_statistics(self, name: str, stats: dict[str, Any]) -> None:
        """Store ``stats`` as ``model.config.norm_stats[name]`` and un-normalise with them.

        What OpenVLA's fine-tuning does with the statistics of its data: the actor (and every
        actor sharing this processor) then decodes action tokens with these q01/q99, and SFT
        targets are tokenised with them.

        Args:
            name: the ``norm_stats`` key (the ``unnorm_key``).
            stats: ``{"action": {"q01", "q99", "mask", ...}}``, e.g. from
                :func:`~vla_torchrl.modules.processors.action_statistics`.

        Examples:
            >>> bundle = build_policy("tiny", lora=False, critic="none", text_tokenizer="builtin")
            >>> q = {"q01": [-0.02] * 6 + [-1.0], "q99": [0.02] * 6 + [1.0], "mask": [True] * 6 + [False]}
            >>> bundle.set_action_statistics("demos", {"action": q})
            >>> tok = bundle.processor.action_tokenizer
            >>> [round(v, 3) for v in tok.unnormalize(torch.ones(7)).tolist()]
            [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 1.0]
        """
        self.model.config.norm_stats = {**self.model.config.norm_stats, name: stats}
        self.model.config.__post_init__()  # validates the new entry
        _, end = self.model.config.action_token_ids
        self.processor.action_tokenizer = ActionTokenizer.from_norm_stats(
            self.model.config.norm_stats,
            name,
            n_bins=self.model.config.n_action_bins,
            base_vocab_size=end,
        )
        self.unnorm_key = name

    def trainable_named_parameters(self) -> dict[str, nn.Parameter]:
        """The trainable parameters (``requires_grad``) of the policy and the critic, by name.

        Names are ``"policy.<name>"`` (in the ``PeftModel`` when LoRA is on, else the OpenVLA)
        and ``"critic.<name>"``. These are the tensors :meth:`save_trainable` writes and
        :meth:`load_trainable` reads (recipes also use them for checkpoints and data-parallel
        synchronisation).

        Returns:
            ``{name: parameter}`` in module order (the parameters themselves, not copies).

        Examples:
            >>> bundle = build_policy("tiny", lora=LoRASettings(rank=2), critic="shared",
            ...                       text_tokenizer="builtin")
            >>> named = bundle.trainable_named_parameters()
            >>> all(p.requires_grad for p in named.values())
            True
            >>> sorted({name.split(".")[0] for name in named})
            ['critic', 'policy']
        """
        owners: list[tuple[str, nn.Module]] = [("policy", self.peft_model or self.model)]
        if self.critic is not None:
            owners.append(("critic", self.critic))
        named: dict[str, nn.Parameter] = {}
        for prefix, owner in owners:
            for name, param in owner.named_parameters():
                if param.requires_grad:
                    named.setdefault(f"{prefix}.{name}", param)
        return named

    def save_trainable(
        self, path: str | os.PathLike[str], *, base_model_name_or_path: str | None = None
    ) -> None:
        """Write every trainable tensor (adapters, value head, critic backbone) to one
        safetensors file; with LoRA also the adapters in peft's format beside it
        (``<path>.adapters/``, with ``base_model_name_or_path`` in its config when given)."""
        from safetensors.torch import save_file

        state = {
            k: p.detach().to("cpu").contiguous()
            for k, p in self.trainable_named_parameters().items()
        }
        save_file(state, str(path), metadata={"format": "pt"})
        if self.peft_model is not None:
            from vla_torchrl.modules.lora import save_adapters

            save_adapters(
                self.peft_model, f"{path}.adapters", base_model_name_or_path=base_model_name_or_path
            )

    def load_trainable(self, path: str | os.PathLike[str]) -> None:
        """Load a file written by :meth:`save_trainable` into a bundle built the same way."""
        from safetensors.torch import load_file

        self.load_trainable_state(load_file(str(path)), source=str(path))

    def load_trainable_state(
        self, state: Mapping[str, torch.Tensor], *, source: str = "the state"
    ) -> None:
        """Copy ``{name: tensor}`` (the names of :meth:`trainable_named_parameters`, e.g. a
        training checkpoint's tensors) into this bundle; ``source`` names it in errors.

        Raises:
            ValueError: a name missing or unexpected, or a shape that differs.
        """
        state = drop_unused_adapters(dict(state), self.model)
        named = self.trainable_named_parameters()
        missing, unexpected = sorted(set(named) - set(state)), sorted(set(state) - set(named))
        if missing or unexpected:
            raise ValueError(
                f"{source} does not match this policy's trainable tensors: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}; build the bundle with the same "
                "lora/critic options."
            )
        for name, param in named.items():  # all checked before any is copied
            if param.shape != state[name].shape:
                raise ValueError(
                    f"{source}: {name}: saved shape {tuple(state[name].shape)} != "
                    f"{tuple(param.shape)} in this policy; build it with the sizes it was "
                    "saved with (the same model, model.arch and lora options)."
                )
        with torch.no_grad():
            for name, param in named.items():
                param.copy_(state[name])

    def eval_actor(
        self, *, temperature: float = 0.6, mode: Literal["sample", "greedy"] = "sample"
    ) -> OpenVLAActor:
        """An actor for evaluation episodes sharing the same weights (paper: T = 0.6)."""
        return OpenVLAActor(
            self.model, self.processor, temperature=temperature, mode=mode, critic=None
        )


def _without(groups: list[dict[str, Any]], frozen: list[nn.Parameter]) -> list[dict[str, Any]]:
    """``groups`` without the ``frozen`` parameters (and without groups left empty)."""
    ids = {id(p) for p in frozen}
    kept = [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in groups]
    return [g for g in kept if g["params"]]


def _vision_parameters(*models: OpenVLA | None) -> list[nn.Parameter]:
    """The parameters of the models' vision towers and projectors."""
    return [
        p
        for m in models
        if m is not None
        for part in (m.vision_backbone, m.projector)
        for p in part.parameters()
    ]


def _token_embedding_parameters(*models: OpenVLA | None) -> list[nn.Parameter]:
    """The language models' input token embeddings (``lm_head`` is untied: not among them)."""
    return [
        p
        for m in models
        if m is not None
        for p in m.language_model.get_input_embeddings().parameters()
    ]


def build_model(
    model_source: ModelSource,
    *,
    config: OpenVLAConfig | None = None,
    overrides: dict[str, Any] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    action_head_init: Literal["smooth", "random"] = "smooth",
) -> OpenVLA:
    """The bare OpenVLA: ``"tiny"`` / ``"small"`` / ``"random"`` (7B layout) random weights, or a
    checkpoint.

    ``action_head_init="smooth"`` gives random-init models action-head rows that vary smoothly
    with the bin index (:mod:`vla_torchrl.modules.action_head_init`: without it RL on a
    random-init model hardly learns); checkpoints keep their weights.
    """
    overrides = overrides or {}
    if model_source == "checkpoint":
        if checkpoint_path is None:
            raise ValueError(
                "model_source='checkpoint' needs checkpoint_path=<directory with config.json and "
                "safetensors shards> (e.g. a local copy of openvla/openvla-7b)."
            )
        return load_openvla(checkpoint_path, dtype=dtype, device=device)
    presets = {
        "tiny": OpenVLAConfig.tiny,
        "small": OpenVLAConfig.small,
        "random": OpenVLAConfig.openvla_7b,
    }
    if model_source not in presets:
        raise ValueError(
            f"model_source={model_source!r} must be 'tiny', 'small', 'random' or 'checkpoint'."
        )
    if config is None:
        config = presets[model_source](**overrides)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = OpenVLA(config)
    finally:
        torch.set_default_dtype(previous)
    if action_head_init == "smooth":
        smooth_action_head_(model)
    elif action_head_init != "random":
        raise ValueError(f"action_head_init={action_head_init!r} must be 'smooth' or 'random'")
    return model.eval()


def build_policy(
    model_source: ModelSource = "tiny",
    *,
    config: OpenVLAConfig | None = None,
    overrides: dict[str, Any] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    lora: LoRASettings | bool = True,
    critic: Literal["none", "shared", "separate"] = "shared",
    critic_input: CriticInput = "h0",
    value_hidden: tuple[int, int] = (512, 128),
    temperature: float = 1.0,
    reference_copy: bool = False,
    text_tokenizer: TextTokenizer | Literal["auto", "builtin"] = "auto",
    unnorm_key: str | None = None,
    gradient_checkpointing: bool = False,
    freeze_vision: bool = False,
    freeze_token_embedding: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    lr_lora: float = 1e-4,
    lr_value: float = 3e-3,
    lr_full: float = 1e-5,
    action_head_init: Literal["smooth", "random"] = "smooth",
) -> PolicyBundle:
    """Build model, processing, actor, evaluator, critic and optimizer groups.

    Args:
        model_source: ``"tiny"`` (CPU tests/demos), ``"small"`` (the CPU scale of ManiSkill,
            :meth:`OpenVLAConfig.small`), ``"random"`` (7B layout, random weights,
            e.g. GPU throughput) or ``"checkpoint"`` (``checkpoint_path``).
        config, overrides: explicit config, or keyword overrides of the preset.
        lora: ``True`` (rank 32, all linear layers), a :class:`LoRASettings`, or ``False``
            (full fine-tuning; all model weights trainable, group ``model`` at ``lr_full``).
        critic: ``"shared"`` (value head on this backbone's hidden states, paper Sec. 4.2),
            ``"separate"`` (its own backbone copy, with its own adapters under LoRA) or ``"none"``.
        critic_input: ``"h0"`` / ``"hn"`` / ``"concat"`` for the shared head.
        value_hidden: hidden sizes of the value MLP (paper: 512, 128).
        temperature: sampling temperature of the actor and evaluator (paper: 1.0 in training).
        reference_copy: without LoRA, keep a frozen copy for ``evaluator.reference()``.
        text_tokenizer: ``"auto"`` (Llama-2 model when found), ``"builtin"`` or an object.
        unnorm_key: the ``norm_stats`` entry that un-normalises actions.
        gradient_checkpointing: activation checkpointing in the LLM and the ViTs.
        freeze_vision: the vision towers and the projector keep their weights: the image
            features are computed without gradient and their parameters (and their LoRA
            adapters) are left out of ``param_groups``; they stay in
            :meth:`PolicyBundle.trainable_named_parameters`, so a saved policy still holds them.
        freeze_token_embedding: the language model's input token embedding (32k rows, most of
            a small model's weights, and only the prompt's few rows get gradient) is looked up
            without gradient and left out of ``param_groups``: it keeps its weights, and is
            still saved. Matters under full fine-tuning (LoRA never trains it); ``lm_head`` is
            untied and still trains.
        action_head_init: action rows of a random-init ``lm_head``: ``"smooth"`` over the bin
            index (default; see :func:`build_model`) or left ``"random"``.
        device, dtype: where and in which precision the model lives (value heads stay fp32).

    Returns:
        a :class:`PolicyBundle`.
    """
    model = build_model(
        model_source,
        config=config,
        overrides=overrides,
        checkpoint_path=checkpoint_path,
        device=device,
        dtype=dtype,
        action_head_init=action_head_init,
    )
    processor = OpenVLAProcessor.from_config(
        model.config, text_tokenizer=text_tokenizer, unnorm_key=unnorm_key, dtype=dtype
    )
    settings = LoRASettings() if lora is True else (lora or None)
    critic_copy = copy.deepcopy(model) if critic == "separate" else None
    reference = None
    if settings is None and reference_copy:
        reference = copy.deepcopy(model).requires_grad_(False)
    peft_model = apply_lora(model, settings) if settings is not None else None
    hidden = model.config.llm_hidden_size
    value: ValueHead | SeparateBackboneCritic | None = None
    head: ValueHead | None = None
    extra: list[dict[str, Any]] = []
    if critic == "shared":
        head = ValueHead(critic_input_dim(hidden, critic_input), hidden=tuple(value_hidden)).to(
            device
        )
        value = head
    elif critic == "separate":
        head = ValueHead(critic_input_dim(hidden, critic_input), hidden=tuple(value_hidden)).to(
            device
        )
        critic_peft = apply_lora(critic_copy, settings) if settings is not None else None
        value = SeparateBackboneCritic(critic_copy, processor, head, critic_input=critic_input)
        critic_params = (
            [p for n, p in critic_peft.named_parameters() if p.requires_grad]
            if critic_peft is not None
            else list(critic_copy.parameters())
        )
        extra.append({"params": critic_params, "lr": lr_lora, "name": "critic_backbone"})
    elif critic != "none":
        raise ValueError(f"critic={critic!r} must be 'none', 'shared' or 'separate'.")
    if gradient_checkpointing:
        model.set_gradient_checkpointing(True)
        if critic_copy is not None:
            critic_copy.set_gradient_checkpointing(True)
    if peft_model is not None:
        groups = trainable_parameter_groups(
            peft_model, head, lr_lora=lr_lora, lr_value=lr_value, extra=extra
        )
    else:
        groups = [{"params": list(model.parameters()), "lr": lr_full, "name": "model"}]
        if head is not None:
            groups.append({"params": list(head.parameters()), "lr": lr_value, "name": "value"})
        groups.extend(extra)
    if freeze_vision:
        model.vision_frozen = True
        if critic_copy is not None:
            critic_copy.vision_frozen = True
        groups = _without(groups, _vision_parameters(model, critic_copy))
    if freeze_token_embedding:
        model.token_embedding_frozen = True
        if critic_copy is not None:
            critic_copy.token_embedding_frozen = True
        groups = _without(groups, _token_embedding_parameters(model, critic_copy))
    shared_input = critic_input if critic == "shared" else "h0"
    actor = OpenVLAActor(
        model, processor, temperature=temperature, critic=value, critic_input=shared_input
    )
    evaluator = OpenVLAEvaluator(
        model,
        processor,
        temperature=temperature,
        critic=value,
        critic_input=shared_input,
        peft_model=peft_model,
        reference_model=reference,
    )
    return PolicyBundle(
        model, processor, actor, evaluator, value, peft_model, groups, unnorm_key=unnorm_key
    )
