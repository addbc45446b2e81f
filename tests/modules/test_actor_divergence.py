"""A diverged policy (non-finite action logits) ends sampling with one line (issue 17 item 7)."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from vla_torchrl.errors import UserError
from vla_torchrl.keys import ACTION_TOKENS_KEY, IMAGE_KEY, INSTRUCTION_KEY
from vla_torchrl.modules.actor import OpenVLAActor
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.openvla import OpenVLA
from vla_torchrl.modules.processors import OpenVLAProcessor


def _actor():
    torch.manual_seed(0)
    cfg = OpenVLAConfig.tiny()
    model = OpenVLA(cfg)
    return model, OpenVLAActor(model, OpenVLAProcessor.from_config(cfg, text_tokenizer="builtin"))


def _batch():
    td = TensorDict({IMAGE_KEY: torch.zeros(2, 32, 32, 3, dtype=torch.uint8)}, [2])
    td[INSTRUCTION_KEY] = ["pick the cube", "stack"]
    return td


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_logits_are_a_one_line_error(value):
    model, actor = _actor()
    assert actor(_batch())[ACTION_TOKENS_KEY].shape == (2, 7)  # finite: samples
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(value)  # what an overflowing update leaves behind
    with pytest.raises(UserError) as info:
        actor(_batch())
    message = str(info.value)
    assert "not finite" in message and "resume=<its step>" in message and "\n" not in message
