"""The instruction as a tensor: zero-padded UTF-8 bytes next to the string.

TorchRL's value estimators (``GAE``, ``TD0Estimator``...) call their value network on a
selection of its ``in_keys`` and run a NaN check over them that assumes tensors; a string entry
(``NonTensorStack``) breaks it. With :class:`InstructionBytes` appended to the env (or applied
to a stored rollout), the toolkit's modules read the instruction from
:data:`~vla_torchrl.keys.INSTRUCTION_BYTES_KEY` instead (``set_keys(instruction=...)``), and
TorchRL's estimator runs on them unchanged.

Examples:
    >>> import torch
    >>> from tensordict import NonTensorStack, TensorDict
    >>> from vla_torchrl.keys import INSTRUCTION_BYTES_KEY, INSTRUCTION_KEY
    >>> from vla_torchrl.utils.text_bytes import decode_strings
    >>> td = TensorDict({INSTRUCTION_KEY: NonTensorStack("put A on B", "put C on D")}, [2])
    >>> out = InstructionBytes(max_bytes=16)(td)
    >>> out[INSTRUCTION_BYTES_KEY].shape, decode_strings(out[INSTRUCTION_BYTES_KEY])
    (torch.Size([2, 16]), ['put A on B', 'put C on D'])
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Bounded, Composite
from torchrl.envs.transforms import Transform

from vla_torchrl.envs.transforms._common import read_strings
from vla_torchrl.keys import INSTRUCTION_BYTES_KEY, INSTRUCTION_KEY, NEXT
from vla_torchrl.utils.text_bytes import encode_strings

__all__ = ["InstructionBytes"]


class InstructionBytes(Transform):
    """Write each env's instruction as ``uint8 [*B, max_bytes]`` UTF-8 bytes (zero-padded).

    The string entry stays. As an env transform it writes the bytes at every reset and step;
    called on stored data (``InstructionBytes()(rollout)``) it fills the root and ``"next"``
    entries of a rollout. An instruction longer than ``max_bytes`` is an error that names it.

    Args:
        max_bytes: byte width (the paper's instructions take < 100 bytes; the 16 unseen
            templates with the longest names < 160).
        in_key: the instruction strings.
        out_key: where the bytes go.
    """

    def __init__(
        self,
        max_bytes: int = 256,
        *,
        in_key: NestedKey = INSTRUCTION_KEY,
        out_key: NestedKey = INSTRUCTION_BYTES_KEY,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes={max_bytes} must be a positive number of bytes")
        super().__init__(in_keys=[in_key], out_keys=[out_key])
        self.max_bytes = int(max_bytes)

    def _encode(self, tensordict: TensorDictBase) -> TensorDictBase:
        strings, batch = read_strings(tensordict, self.in_keys[0])
        codes = encode_strings(strings, self.max_bytes).reshape(*batch, self.max_bytes)
        tensordict.set(self.out_keys[0], codes.to(tensordict.device or "cpu"))
        return tensordict

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._encode(next_tensordict)

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        return self._encode(tensordict_reset)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        self._encode(tensordict)
        nxt = tensordict.get(NEXT, None)
        if isinstance(nxt, TensorDictBase) and self.in_keys[0] in nxt.keys(True, True):
            self._encode(nxt)
        return tensordict

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        if self.in_keys[0] not in observation_spec.keys(True, True):
            raise KeyError(
                f"{type(self).__name__}: the env's observation spec has no {self.in_keys[0]!r}"
            )
        observation_spec[self.out_keys[0]] = Bounded(
            low=0,
            high=255,
            shape=(*observation_spec.shape, self.max_bytes),
            dtype=torch.uint8,
            device=observation_spec.device,
        )
        return observation_spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_bytes={self.max_bytes}, out_key={self.out_keys[0]!r})"
