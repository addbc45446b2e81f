"""The OOD transforms on the toy env inside a TorchRL Collector (automatic partial resets)."""

from __future__ import annotations

import torch
from torchrl.collectors import Collector
from torchrl.envs import TransformedEnv

from vla_torchrl.envs.instruction_templates import UNSEEN_INSTRUCTION_TEMPLATES
from vla_torchrl.envs.toy import make_toy_env
from vla_torchrl.envs.transforms import DynamicTextureOverlay, InstructionRephrase
from vla_torchrl.keys import (
    DONE_KEY,
    EPISODE_ID_KEY,
    FOREGROUND_MASK_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
)

ENVS, STEPS = 4, 40


def test_collector_keeps_one_phrasing_per_episode_and_overlays_every_frame():
    base = make_toy_env(ENVS, seed=0)
    env = TransformedEnv(base, InstructionRephrase(UNSEEN_INSTRUCTION_TEMPLATES, seed=0))
    white = torch.full((8, 8, 3), 255, dtype=torch.uint8)
    env.append_transform(DynamicTextureOverlay([white], alpha=0.5, region="image", seed=0))
    collector = Collector(env, None, frames_per_batch=ENVS * STEPS, total_frames=ENVS * STEPS)
    batch = next(iter(collector))
    collector.shutdown()

    ids = batch[EPISODE_ID_KEY]
    root, nxt = batch.get(INSTRUCTION_KEY).tolist(), batch.get(("next", INSTRUCTION_KEY)).tolist()
    phrasings: dict[int, set[str]] = {}
    for b in range(ENVS):
        for t in range(STEPS):
            phrasings.setdefault(int(ids[b, t]), set()).update({root[b][t], nxt[b][t]})
    assert len(phrasings) > ENVS  # episodes ended and envs were reset within the batch
    assert all(len(p) == 1 for p in phrasings.values())  # one phrasing per episode
    assert all("dot" in next(iter(p)) and "square" in next(iter(p)) for p in phrasings.values())
    assert len({next(iter(p)) for p in phrasings.values()}) > 1
    # each episode id appears in one contiguous run, ended by done
    done = batch["next", DONE_KEY].squeeze(-1)
    for b in range(ENVS):
        changes = (ids[b, 1:] != ids[b, :-1]).nonzero().flatten()
        assert done[b, changes].all()
    # a white texture at alpha 0.5 over the whole frame: every pixel >= 128
    assert (batch[IMAGE_KEY] >= 127).all() and (batch["next", IMAGE_KEY] >= 127).all()
    assert batch[FOREGROUND_MASK_KEY].any()
