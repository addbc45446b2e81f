"""Critics: a value head on the policy's hidden states (shared backbone) or on its own backbone.

Paper Sec. 4.2: the value is read from h^0, the last hidden state at the position that predicts
the first action token, through a 3-layer MLP ``H -> 512 -> 128 -> 1`` with GELU (FACTS.md).
Options for the critic input (``CriticInput``):

- ``"h0"`` (default): h^0, ``[N, H]``.
- ``"hn"``: the state after the last action token (h^7), ``[N, H]``.
- ``"concat"``: ``[h^0, ..., h^7]`` flattened in order, ``[N, 8 H]`` (no pooling).

:func:`value_operator` wraps a head as a TorchRL ``ValueOperator`` reading ``HIDDEN_KEY`` (what
the actor writes) and writing ``VALUE_KEY``; with the actor this is TorchRL's actor-value
pattern (common trunk = the VLA backbone, policy head = restricted LM head, value head = MLP).
:class:`SeparateBackboneCritic` is the ablation with its own VLA copy (paper: 81.3 GB vs 44.4 GB).

Examples:
    >>> import torch
    >>> head = ValueHead(64)
    >>> head(torch.zeros(5, 64)).shape
    torch.Size([5, 1])
    >>> select_critic_input(torch.arange(6.0).view(1, 3, 2), "concat").tolist()
    [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]
"""

from __future__ import annotations

from typing import Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import ValueOperator

from vla_torchrl.keys import ACTION_TOKENS_KEY, IMAGE_KEY, INSTRUCTION_KEY, VALUE_KEY
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.passes import teacher_forced_hidden
from vla_torchrl.modules.processors.bundle import OpenVLAProcessor, read_observation

__all__ = [
    "CriticInput",
    "SeparateBackboneCritic",
    "SharedValueNetwork",
    "ValueHead",
    "check_shared_head",
    "critic_input_dim",
    "select_critic_input",
    "value_operator",
    "write_critic_value",
]

CriticInput = Literal["h0", "hn", "concat"]
_MODES = ("h0", "hn", "concat")


def _rename_keys(module, keys: dict, accepted: tuple[str, ...]) -> None:
    """``set_keys`` of the modules: ``<name>=key`` sets ``module.<name>_key``."""
    unknown = sorted(set(keys) - set(accepted))
    if unknown:
        raise ValueError(
            f"{type(module).__name__}.set_keys: unknown key name(s) {unknown}; accepted: "
            f"{list(accepted)}"
        )
    for name, key in keys.items():
        setattr(module, f"{name}_key", key)


def critic_input_dim(hidden_size: int, mode: CriticInput, *, action_dim: int = 7) -> int:
    """Width of the critic input for ``mode`` (``concat``: ``(action_dim + 1) * H``)."""
    if mode not in _MODES:
        raise ValueError(f"critic input {mode!r} is not one of {_MODES}.")
    return hidden_size * (action_dim + 1) if mode == "concat" else hidden_size


def select_critic_input(hidden: torch.Tensor, mode: CriticInput) -> torch.Tensor:
    """From states ``[N, K + 1, H]`` (h^0..h^K) pick the critic input for ``mode``."""
    if mode == "h0":
        return hidden[:, 0]
    if mode == "hn":
        return hidden[:, -1]
    if mode == "concat":
        return hidden.flatten(1)
    raise ValueError(f"critic input {mode!r} is not one of {_MODES}.")


def check_shared_head(
    critic: ValueHead | SeparateBackboneCritic | None,
    config: OpenVLAConfig,
    critic_input: CriticInput,
) -> None:
    """Raise when a shared-backbone :class:`ValueHead` does not fit ``critic_input``.

    The check the actor and the evaluator make on their ``critic`` argument; other critics
    (``None``, :class:`SeparateBackboneCritic`) pass.

    Args:
        critic: the critic given to the actor / evaluator.
        config: the policy's model config (hidden size, action dim).
        critic_input: ``"h0"``, ``"hn"`` or ``"concat"``.

    Examples:
        >>> from vla_torchrl.modules.config import OpenVLAConfig
        >>> cfg = OpenVLAConfig.tiny()
        >>> check_shared_head(ValueHead(cfg.llm_hidden_size), cfg, "h0")
        >>> check_shared_head(ValueHead(cfg.llm_hidden_size), cfg, "concat")
        Traceback (most recent call last):
        ...
        ValueError: ValueHead.in_dim=... does not match critic_input='concat' (expects ...).
    """
    if not isinstance(critic, ValueHead):
        return
    expected = critic_input_dim(config.llm_hidden_size, critic_input, action_dim=config.action_dim)
    if critic.in_dim != expected:
        raise ValueError(
            f"ValueHead.in_dim={critic.in_dim} does not match critic_input="
            f"{critic_input!r} (expects {expected})."
        )


def write_critic_value(
    tensordict: TensorDictBase,
    critic: ValueHead | SeparateBackboneCritic | None,
    hidden: torch.Tensor,
    critic_input: CriticInput,
) -> None:
    """Write ``VALUE_KEY`` ``[*B, 1]`` into ``tensordict`` from the actor's / evaluator's critic.

    A shared :class:`ValueHead` reads ``critic_input`` from ``hidden`` (``[N, K + 1, H]``,
    h^0..h^K of the pass just run); a :class:`SeparateBackboneCritic` runs on ``tensordict``
    itself; ``None`` writes nothing.

    Args:
        tensordict: the batch (``VALUE_KEY`` is written here).
        critic: ``None``, a shared :class:`ValueHead` or a :class:`SeparateBackboneCritic`.
        hidden: the policy's hidden states h^0..h^K (used by a shared head only).
        critic_input: ``"h0"``, ``"hn"`` or ``"concat"`` (shared head only).
    """
    if isinstance(critic, ValueHead):
        value = critic(select_critic_input(hidden, critic_input)).float()
        tensordict.set(VALUE_KEY, value.reshape(*tensordict.batch_size, 1))
    elif critic is not None:
        critic(tensordict)


class ValueHead(nn.Module):
    """MLP ``in_dim -> 512 -> 128 -> 1`` with GELU (paper Sec. 4.2, FACTS.md); float32 params.

    The input is cast to the head's dtype, so a bf16 backbone can feed an fp32 head. With
    ``detach_input`` the value loss trains the head only, not the backbone it reads (the paper's
    shared critic trains both).

    Examples:
        >>> head = ValueHead(8, hidden=(4, 4), detach_input=True)
        >>> features = torch.randn(2, 8, requires_grad=True)
        >>> head(features).sum().backward()
        >>> features.grad is None, head.net[0].weight.grad is not None
        (True, True)
    """

    def __init__(
        self, in_dim: int, *, hidden: tuple[int, int] = (512, 128), detach_input: bool = False
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.detach_input = detach_input
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden[0]),
            nn.GELU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.GELU(),
            nn.Linear(hidden[1], 1),
        )

    @property
    def hidden(self) -> tuple[int, int]:
        """The two hidden widths (``ModelConfig.value_head_hidden`` of the policy).

        Examples:
            >>> ValueHead(8, hidden=(16, 4)).hidden
            (16, 4)
        """
        return self.net[0].out_features, self.net[2].out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.detach_input:
            features = features.detach()
        return self.net(features.to(self.net[0].weight.dtype))


def value_operator(
    head: ValueHead, *, in_key: NestedKey, out_key: NestedKey = VALUE_KEY
) -> ValueOperator:
    """TorchRL ``ValueOperator`` reading the actor's hidden features (``HIDDEN_KEY``)."""
    return ValueOperator(module=head, in_keys=[in_key], out_keys=[out_key])


class SeparateBackboneCritic(TensorDictModuleBase):
    """Critic with its own OpenVLA copy (the separate-backbone ablation).

    Reads image + instruction (and the action tokens for ``hn``/``concat``), runs its own
    backbone, writes ``VALUE_KEY``.

    Args:
        model: the critic's own OpenVLA (e.g. a deep copy of the policy's starting weights).
        processor: the processing steps.
        head: a :class:`ValueHead` of the right input width.
        critic_input: ``"h0"`` (prefix only), ``"hn"`` or ``"concat"``.
    """

    def __init__(
        self,
        model: OpenVLA,
        processor: OpenVLAProcessor,
        head: ValueHead,
        *,
        critic_input: CriticInput = "h0",
        image_key: NestedKey = IMAGE_KEY,
        instruction_key: NestedKey = INSTRUCTION_KEY,
        action_tokens_key: NestedKey = ACTION_TOKENS_KEY,
        value_key: NestedKey = VALUE_KEY,
    ) -> None:
        super().__init__()
        expected = critic_input_dim(
            model.config.llm_hidden_size, critic_input, action_dim=model.config.action_dim
        )
        if head.in_dim != expected:
            raise ValueError(
                f"ValueHead.in_dim={head.in_dim} but critic_input={critic_input!r} on hidden size "
                f"{model.config.llm_hidden_size} gives {expected}."
            )
        self.model = model
        self.processor = processor
        self.head = head
        self.critic_input = critic_input
        self.image_key, self.instruction_key = image_key, instruction_key
        self.action_tokens_key, self.value_key = action_tokens_key, value_key
        self.in_keys = [image_key, instruction_key] + (
            [] if critic_input == "h0" else [action_tokens_key]
        )
        self.out_keys = [value_key]

    def set_keys(self, **keys: NestedKey) -> SeparateBackboneCritic:
        """Rename keys: ``image``, ``instruction``, ``action_tokens``, ``value``; returns ``self``."""
        _rename_keys(self, keys, ("image", "instruction", "action_tokens", "value"))
        self.in_keys = [self.image_key, self.instruction_key] + (
            [] if self.critic_input == "h0" else [self.action_tokens_key]
        )
        self.out_keys = [self.value_key]
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        images, texts = read_observation(tensordict, self.image_key, self.instruction_key)
        tokens = None
        if self.critic_input != "h0":
            tokens = tensordict.get(self.action_tokens_key).reshape(len(texts), -1)
        hidden = teacher_forced_hidden(self.model, self.processor, images, texts, tokens)
        value = self.head(select_critic_input(hidden, self.critic_input)).float()
        tensordict.set(self.value_key, value.reshape(*tensordict.batch_size, 1))
        return tensordict


class SharedValueNetwork(TensorDictModuleBase):
    """``V(s)`` from image + instruction alone: prefix pass of the policy backbone, head on h^0.

    For value bootstrapping where no action has been taken yet (e.g. TorchRL's ``GAE`` calling
    its ``value_network`` on ``("next", ...)`` observations). Only ``"h0"`` is possible here:
    ``hn`` / ``concat`` need the action tokens of the state.

    With TorchRL's ``GAE``: append :class:`~vla_torchrl.envs.transforms.InstructionBytes` to
    the env (or apply it to the rollout), point the critic at the bytes with
    ``set_keys(instruction=INSTRUCTION_BYTES_KEY)`` and build ``GAE(..., deactivate_vmap=True)``
    (tested in ``tests/modules/test_torchrl_interop.py``).

    Args:
        model: the policy's OpenVLA (shared backbone).
        processor: the processing steps.
        head: the shared :class:`ValueHead` (input h^0).
    """

    def __init__(
        self,
        model: OpenVLA,
        processor: OpenVLAProcessor,
        head: ValueHead,
        *,
        image_key: NestedKey = IMAGE_KEY,
        instruction_key: NestedKey = INSTRUCTION_KEY,
        value_key: NestedKey = VALUE_KEY,
    ) -> None:
        super().__init__()
        if head.in_dim != model.config.llm_hidden_size:
            raise ValueError(
                f"SharedValueNetwork needs an h^0 head (in_dim={model.config.llm_hidden_size}), "
                f"got in_dim={head.in_dim}; hn/concat heads need action tokens."
            )
        self.model, self.processor, self.head = model, processor, head
        self.image_key, self.instruction_key, self.value_key = image_key, instruction_key, value_key
        self.in_keys = [image_key, instruction_key]
        self.out_keys = [value_key]

    def set_keys(self, **keys: NestedKey) -> SharedValueNetwork:
        """Rename keys: ``image``, ``instruction``, ``value``; returns ``self``."""
        _rename_keys(self, keys, ("image", "instruction", "value"))
        self.in_keys = [self.image_key, self.instruction_key]
        self.out_keys = [self.value_key]
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        image = tensordict.get(self.image_key, None)
        if _is_vmapped(image):
            raise RuntimeError(
                "SharedValueNetwork was called under torch.vmap (TorchRL's value estimators vmap "
                "their value network by default); the backbone does not support vmap. Build the "
                "estimator with deactivate_vmap=True, e.g. GAE(..., value_network=critic, "
                "deactivate_vmap=True), or use vla_torchrl.objectives.GAEAdvantage"
            )
        images, texts = read_observation(tensordict, self.image_key, self.instruction_key)
        hidden = teacher_forced_hidden(self.model, self.processor, images, texts, None)
        value = self.head(hidden[:, 0]).float()
        tensordict.set(self.value_key, value.reshape(*tensordict.batch_size, 1))
        return tensordict


def _is_vmapped(value) -> bool:
    """Whether ``value`` is a tensor batched by ``torch.vmap``.

    Torch has no public test for it; its functorch internals answer (torch 2.x). Without them
    (a later torch) this says False, and the backbone's own error surfaces instead of ours.

    Examples:
        >>> _is_vmapped(torch.zeros(2))
        False
        >>> torch.vmap(lambda x: torch.tensor(_is_vmapped(x)))(torch.zeros(2)).all().item()
        True
    """
    check = getattr(getattr(torch._C, "_functorch", None), "is_batchedtensor", None)
    return bool(check is not None and isinstance(value, torch.Tensor) and check(value))
