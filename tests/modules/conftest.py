"""Tiny OpenVLA fixtures (CPU, fp32) shared by the module tests."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.keys import IMAGE_KEY, INSTRUCTION_KEY
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.processors import OpenVLAProcessor

NORM_STATS = {
    "bridge_orig": {
        "action": {
            "q01": [-0.03, -0.04, -0.02, -0.1, -0.1, -0.2, 0.0],
            "q99": [0.03, 0.04, 0.05, 0.1, 0.12, 0.2, 1.0],
            "mask": [True, True, True, True, True, True, False],
        }
    }
}


def make_tiny_model(seed: int = 0) -> OpenVLA:
    """Tiny model whose action rows of the LM head are scaled up so distributions are peaked."""
    torch.manual_seed(seed)
    model = OpenVLA(OpenVLAConfig.tiny(norm_stats=NORM_STATS)).eval()
    start, end = model.config.action_token_ids
    with torch.no_grad():
        model.language_model.lm_head.weight[start:end].normal_(0.0, 1.0)
    return model


@pytest.fixture
def tiny_model() -> OpenVLA:
    return make_tiny_model()


@pytest.fixture
def processor(tiny_model: OpenVLA) -> OpenVLAProcessor:
    return OpenVLAProcessor.from_config(tiny_model.config, text_tokenizer="builtin")


def make_batch(instructions: list[str], *, seed: int = 1, size: int = 40) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (len(instructions), size, size, 3), generator=gen)
    td = TensorDict({IMAGE_KEY: images.to(torch.uint8)}, [len(instructions)])
    td[INSTRUCTION_KEY] = list(instructions)
    return td


INSTRUCTIONS = [
    "put the carrot on the plate",
    "stack",
    "pick up the small green cube and place it in the basket",
]
