"""vla-torchrl: RL fine-tuning of Vision-Language-Action models on TorchRL.

Layers (imports flow one way): ``recipes`` -> ``objectives`` / ``modules`` / ``envs`` ->
``keys`` / ``assets`` / ``utils``.
"""

from __future__ import annotations

__version__ = "0.1.0"
