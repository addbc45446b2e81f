"""Stage flags and sparse reward (Sec. 5.1) on scripted sequences, against hand-written rewards.

Each sequence is a list of per-step ``(is_grasped, on_target)``; the expected rewards are written
by hand from the definition: +0.1 at the first grasped step, +0.1 at the 5th consecutive grasped
step, +1.0 at the first step on the target once the object has been grasped (held or not).
"""

from __future__ import annotations

import pytest
import torch

from vla_torchrl.envs.maniskill.stages import stage_potential, update_stages

G, T = (True, False), (False, True)  # grasped off target; on target, not grasped
GT, N = (True, True), (False, False)  # grasped on target; neither

CASES = {
    # pushed onto the receptacle (or spawned there), never grasped: nothing, no success
    "never_grasped_on_target": ([N, T, T, T, T, T], [0, 0, 0, 0, 0, 0], False),
    # grasped, carried, on the receptacle while still holding: success without a release
    "grasped_on_target_holding": ([G, G, GT, GT], [0.1, 0, 1.0, 0], True),
    # held 5 steps first, then placed while holding
    "held_then_placed": ([G, G, G, G, G, GT], [0.1, 0, 0, 0, 0.1, 1.0], True),
    # grasped 2 steps, dropped (hold count restarts), re-grasped 5 steps, placed
    "dropped_regrasped": (
        [G, G, N, N, G, G, G, G, G, GT],
        [0.1, 0, 0, 0, 0, 0, 0, 0, 0.1, 1.0],
        True,
    ),
    # grasped, dropped, then it lands on the receptacle released: a grasp came first
    "grasped_dropped_onto_target": ([G, N, T], [0.1, 0, 1.0], True),
    # on the receptacle before the grasp: success at the step the grasp starts
    "on_target_then_grasped": ([T, T, GT], [0, 0, 1.1], True),
    # 4 grasped steps, a gap, 4 more: never 5 consecutive, so no hold bonus
    "interrupted_hold": ([G, G, G, G, N, G, G, G, G], [0.1] + [0] * 8, False),
}


def _run(sequence):
    """Plain loop over the steps of one env; returns per-step rewards and the final success."""
    flags = (torch.tensor([0]), torch.tensor([False]), torch.tensor([False]), torch.tensor([False]))
    before = 0.0
    rewards = []
    for is_grasped, on_target in sequence:
        flags = update_stages(torch.tensor([is_grasped]), torch.tensor([on_target]), *flags)
        now = float(stage_potential(*flags[1:]))
        rewards.append(now - before)
        before = now
    return rewards, bool(flags[3])


@pytest.mark.parametrize("name", CASES)
def test_scripted_sequences(name):
    sequence, expected, success = CASES[name]
    rewards, got_success = _run(sequence)
    assert rewards == pytest.approx(expected, abs=1e-6)
    assert got_success == success


def test_batched_envs_are_independent():
    # the same cases side by side in one batch give each case's own rewards
    names = list(CASES)
    steps = max(len(CASES[n][0]) for n in names)
    padded = [CASES[n][0] + [N] * (steps - len(CASES[n][0])) for n in names]
    b = len(names)
    flags = (torch.zeros(b, dtype=torch.long), *(torch.zeros(b, dtype=torch.bool),) * 3)
    before = torch.zeros(b)
    rewards = []
    for t in range(steps):
        grasp = torch.tensor([seq[t][0] for seq in padded])
        target = torch.tensor([seq[t][1] for seq in padded])
        flags = update_stages(grasp, target, *flags)
        now = stage_potential(*flags[1:])
        rewards.append(now - before)
        before = now
    rewards = torch.stack(rewards, 1)
    for i, n in enumerate(names):
        expected = CASES[n][1] + [0] * (steps - len(CASES[n][1]))
        assert rewards[i].tolist() == pytest.approx(expected, abs=1e-6), n
    assert flags[3].tolist() == [CASES[n][2] for n in names]
