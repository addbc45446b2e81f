"""Same-start groups of GRPO(s) on ManiSkill (issue 15 item 3): episode numbering per worker."""

from __future__ import annotations

import pytest

from vla_torchrl.envs.builder import episode_numbering


def _ids(numbering, episodes):
    """The first ``episodes`` episode ids of each env, by a plain loop."""
    return [[offset + k * stride for k in range(episodes)] for offset, stride in numbering]


def test_default_numbering_gives_every_env_its_own_episodes():
    ids = _ids(episode_numbering(3), 3)
    assert ids == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_groups_share_episodes_and_groups_differ():
    ids = _ids(episode_numbering(6, same_start_groups=3), 3)
    assert ids == [[0, 2, 4]] * 3 + [[1, 3, 5]] * 3


def test_uneven_last_group():
    ids = _ids(episode_numbering(5, same_start_groups=2), 2)
    assert ids == [[0, 3], [0, 3], [1, 4], [1, 4], [2, 5]]


def test_bad_group_size():
    with pytest.raises(ValueError, match="same_start_groups=0"):
        episode_numbering(4, same_start_groups=0)
