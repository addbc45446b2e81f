"""Task stages and the sparse stage reward of "put O on R" (paper Sec. 5.1), as tensor functions.

The paper (Sec. 5.1): "Rewards are sparse: 0.1 for grasping and continuously holding the correct
object, and 1.0 for placing it successfully." Per step the reward is a difference of the
potential ``Phi = 0.1 grasped + 0.1 held + 1.0 success`` (so an episode's return is its final
potential, 0 / 0.1 / 0.2 / 1.2), with these flags, per env:

* ``grasped``: the target object has been grasped at some step of the episode so far;
* ``held``: it has been grasped for ``HOLD_STEPS`` (5) consecutive steps at some point;
* ``success``: it has been on the target receptacle at a step where ``grasped`` holds
  (this step's grasp included).

Two choices, taken from the paper's text and the public reference run (RL4VLA), whose potential
is ``0.1 is_src_obj_grasped + 0.1 consecutive_grasp + 1.0 (success & is_src_obj_grasped)``
with ManiSkill's Bridge "so far" grasp flags and ``success`` = the object on the target:

1. Success needs a grasp first: the reward is for *placing* the object, so one that reaches the
   receptacle without ever being grasped (pushed there, or spawned next to it) earns nothing,
   and does not end the episode. A grasp at any earlier step counts: grasped, dropped and
   pushed onto the receptacle, or dropped and re-grasped, then placed, are successes.
2. Success does not need a release: the paper does not ask for one and the reference counts the
   object on the target alone, so an object still held while it rests on the receptacle
   succeeds (``on_target`` itself requires it to touch the receptacle from above).

Success is latched ("so far") like the other flags: the env ends the episode at the first
success, where the reference's instantaneous success term and the latched one agree.

Examples:
    >>> import torch
    >>> f = lambda *v: torch.tensor(v)
    >>> state = (f(0), f(False), f(False), f(False))  # hold count, grasped, held, success
    >>> # on the receptacle without a grasp, then grasped on it
    >>> state = update_stages(f(False), f(True), *state)
    >>> stage_potential(*state[1:]).tolist()
    [0.0]
    >>> state = update_stages(f(True), f(True), *state)
    >>> [round(x, 6) for x in stage_potential(*state[1:]).tolist()]
    [1.1]
"""

from __future__ import annotations

import torch

__all__ = [
    "GRASP_POTENTIAL",
    "HOLD_POTENTIAL",
    "HOLD_STEPS",
    "SUCCESS_POTENTIAL",
    "placed",
    "stage_potential",
    "update_stages",
]

# Reward potential (Sec. 5.1): 0.1 grasped, +0.1 held 5 consecutive steps, +1.0 success.
GRASP_POTENTIAL, HOLD_POTENTIAL, SUCCESS_POTENTIAL = 0.1, 0.1, 1.0
HOLD_STEPS = 5


def placed(on_target: torch.Tensor, grasped: torch.Tensor) -> torch.Tensor:
    """This step's success: on the target after a grasp (``grasped``: so far, this step's included).

    Examples:
        >>> placed(torch.tensor([True, True, False]), torch.tensor([False, True, True])).tolist()
        [False, True, False]
    """
    return on_target & grasped


def update_stages(
    is_grasped: torch.Tensor,
    on_target: torch.Tensor,
    hold_count: torch.Tensor,
    grasped: torch.Tensor,
    held: torch.Tensor,
    success: torch.Tensor,
    *,
    hold_steps: int = HOLD_STEPS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The stage flags after one step, from this step's ``is_grasped`` / ``on_target``.

    Args:
        is_grasped: the target object is in the gripper now (bool ``[B]``).
        on_target: it rests on the target receptacle now (bool ``[B]``).
        hold_count: consecutive grasped steps up to the previous step (long ``[B]``).
        grasped, held, success: the flags up to the previous step (bool ``[B]``).
        hold_steps: consecutive grasped steps that make ``held``.

    Returns:
        ``(hold_count, grasped, held, success)`` after this step (new tensors).
    """
    hold_count = torch.where(is_grasped, hold_count + 1, torch.zeros_like(hold_count))
    grasped = grasped | is_grasped
    held = held | (hold_count >= hold_steps)
    success = success | placed(on_target, grasped)
    return hold_count, grasped, held, success


def stage_potential(
    grasped: torch.Tensor, held: torch.Tensor, success: torch.Tensor
) -> torch.Tensor:
    """``Phi = 0.1 grasped + 0.1 held + 1.0 success`` (Sec. 5.1); the reward is its difference."""
    return (
        GRASP_POTENTIAL * grasped.float()
        + HOLD_POTENTIAL * held.float()
        + SUCCESS_POTENTIAL * success.float()
    )
