"""planning layer: will it fit? GPU memory of an update and a rollout step, estimated on the CPU.

:func:`estimate_memory` builds the project's real modules on fake tensors
(``torch._subclasses.FakeTensorMode``: shapes and dtypes, no data), runs one optimizer step of
the loss and one rollout step under a :class:`LiveStorageCounter`, and reports the peak by
category (frozen weights, trainable weights, optimizer state, gradients, activations).
:mod:`vla_torchrl.planning.advice` turns estimates into a fit / does-not-fit verdict and the
settings that would fit. The CLI is ``vla-torchrl-plan`` (:mod:`vla_torchrl.recipes.plan`).

Imports flow recipes -> planning -> objectives / modules.
"""

from vla_torchrl.planning.counter import LiveStorageCounter

__all__ = ["LiveStorageCounter"]
