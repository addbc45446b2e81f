"""TorchRL's Collector with ``reset_at_each_iter=True`` on the toy env (issue 16).

Without any device argument the collector resolves ``policy_device=None`` while the env is on
``cpu``, keeps its carrier device-less and updates it with the env's reset output: the reset's
per-env instruction strings keep ``device=cpu`` and cannot be stacked with the later device-less
ones (``devices differ, got cpu and None``, inside TorchRL). Passing ``device=env.device`` (no
``storing_device``) is the README's recipe; this checks it collects fresh episodes every batch.
"""

from __future__ import annotations

from torchrl.collectors import Collector
from torchrl.envs.utils import RandomPolicy

from vla_torchrl.envs.toy import make_toy_env
from vla_torchrl.keys import EPISODE_ID_KEY, INSTRUCTION_KEY

ENVS, STEPS = 3, 4


def test_reset_at_each_iter_collects_fresh_episodes_with_device_given():
    env = make_toy_env(ENVS, seed=0, max_steps=50, hold_steps=50)  # no episode ends
    collector = Collector(
        env,
        RandomPolicy(env.action_spec),
        frames_per_batch=ENVS * STEPS,
        total_frames=3 * ENVS * STEPS,
        reset_at_each_iter=True,
        device=env.device,
    )
    batches = [b.clone() for b in collector]
    collector.shutdown()
    assert len(batches) == 3
    first = int(batches[0][EPISODE_ID_KEY][0, 0])
    for i, batch in enumerate(batches):
        assert batch.batch_size == (ENVS, STEPS) and str(batch.device) == "cpu"
        # one episode per env per batch, and each batch resets all envs: the next ENVS ids
        start = first + ENVS * i
        assert batch[EPISODE_ID_KEY].tolist() == [[start + b] * STEPS for b in range(ENVS)]
        texts = batch.get(INSTRUCTION_KEY).tolist()
        assert all(t.startswith("put dot on") for row in texts for t in row)
        assert all(len(set(row)) == 1 for row in texts)  # one instruction per episode
