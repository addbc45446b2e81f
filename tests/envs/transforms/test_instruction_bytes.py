"""InstructionBytes: the instruction as UTF-8 bytes, decoded back exactly, read as the
instruction by the modules, and declared in the env's spec."""

from __future__ import annotations

import pytest
import torch
from tensordict import NonTensorStack, TensorDict
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import check_env_specs

from vla_torchrl.envs.toy import make_toy_env
from vla_torchrl.envs.transforms import InstructionBytes
from vla_torchrl.keys import IMAGE_KEY, INSTRUCTION_BYTES_KEY, INSTRUCTION_KEY
from vla_torchrl.modules.processors import read_observation
from vla_torchrl.utils.text_bytes import decode_strings, encode_strings


def test_bytes_are_the_utf8_encoding_zero_padded():
    codes = encode_strings(["ab", "é"], width=4)
    # hand-computed: 'a' = 97, 'b' = 98; 'é' = 0xC3 0xA9 in UTF-8
    assert codes.tolist() == [[97, 98, 0, 0], [0xC3, 0xA9, 0, 0]]
    assert decode_strings(codes) == ["ab", "é"]


def test_too_long_or_nul_instructions_are_refused_with_the_string():
    with pytest.raises(ValueError, match="takes 11 UTF-8 bytes, more than width=8"):
        encode_strings(["put A on B!"], width=8)
    with pytest.raises(ValueError, match="NUL"):
        encode_strings(["a\x00b"], width=8)
    td = TensorDict({INSTRUCTION_KEY: NonTensorStack("put the carrot on the plate")}, [1])
    with pytest.raises(ValueError, match="put the carrot"):
        InstructionBytes(max_bytes=8)(td)


def test_env_transform_writes_the_bytes_at_reset_and_step_and_declares_them():
    env = TransformedEnv(make_toy_env(2, seed=0, max_steps=3), InstructionBytes(max_bytes=64))
    check_env_specs(env)
    spec = env.observation_spec[INSTRUCTION_BYTES_KEY]
    assert spec.shape == (2, 64) and spec.dtype == torch.uint8
    rollout = env.rollout(4, break_when_any_done=False)
    for td in (rollout, rollout["next"]):
        strings = [s for row in td.get(INSTRUCTION_KEY).tolist() for s in row]
        assert decode_strings(td[INSTRUCTION_BYTES_KEY].reshape(-1, 64)) == strings
    env.close()


def test_the_modules_read_the_bytes_as_the_instruction():
    td = TensorDict({IMAGE_KEY: torch.zeros(2, 3, 8, 8, 3, dtype=torch.uint8)}, [2, 3])
    td[INSTRUCTION_KEY] = [[f"put {i}{j} on R" for j in range(3)] for i in range(2)]
    InstructionBytes(max_bytes=16)(td)
    _, from_strings = read_observation(td, IMAGE_KEY, INSTRUCTION_KEY)
    _, from_bytes = read_observation(td, IMAGE_KEY, INSTRUCTION_BYTES_KEY)
    assert from_bytes == from_strings and from_strings[4] == "put 11 on R"
    td[INSTRUCTION_BYTES_KEY] = td[INSTRUCTION_BYTES_KEY].float()
    with pytest.raises(TypeError, match="UTF-8 bytes"):
        read_observation(td, IMAGE_KEY, INSTRUCTION_BYTES_KEY)
