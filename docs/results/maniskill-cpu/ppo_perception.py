"""PPO with the vision towers unfrozen, anchored by the pretraining's perception losses on the
demonstrations (issue 14, twelfth session): the name ``ppo-perception.sh`` trains.

The recorded run (``runs/ppop-s0``) used this file as it was at commit 5a68633, a standalone
``LossModule``. The same loss is now the package's
:class:`vla_torchrl.training.perception_anchor.PPOWithPerceptionLoss` (checked equal on the SFT policy
and ``data/dart96-s1``: the same demonstration frames, shifts and loss values for the same
global seed); it logs ``perception_position`` where the recorded run logged ``perception_flat``.
"""

from vla_torchrl.training.perception_anchor import PPOWithPerceptionLoss  # noqa: F401
