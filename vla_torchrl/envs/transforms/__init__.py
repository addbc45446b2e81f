"""Out-of-distribution perturbations (paper Appendix A.4) as TorchRL env transforms.

Append them to any env that writes the toolkit's keys (``vla_torchrl.keys``)::

    env = TransformedEnv(base_env, DynamicTextureOverlay(textures, alpha=0.3, region="foreground"))

- :class:`DynamicTextureOverlay`: *Dynamic Texture* (foreground) and *Dynamic Noise* (whole
  image), weak (alpha 0.3) or strong (alpha 0.5).
- :class:`InstructionRephrase`: *Unseen Instruction Phrasing*.
- :class:`InstructionBytes`: the instruction also as a ``uint8`` tensor, for TorchRL pieces
  that take tensors only (its ``GAE``).

and the training-time :class:`ImageAugmentation` (random shift, brightness / contrast jitter).
"""

from __future__ import annotations

from vla_torchrl.envs.transforms.augment import ImageAugmentation
from vla_torchrl.envs.transforms.instruction import InstructionRephrase, parse_instruction
from vla_torchrl.envs.transforms.instruction_bytes import InstructionBytes
from vla_torchrl.envs.transforms.texture import DynamicTextureOverlay

__all__ = [
    "DynamicTextureOverlay",
    "ImageAugmentation",
    "InstructionBytes",
    "InstructionRephrase",
    "parse_instruction",
]
