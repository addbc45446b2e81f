"""Run the ``>>>`` examples of the modules written for the toy env and the OOD transforms."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "vla_torchrl.envs.instruction_templates",
    "vla_torchrl.envs.maniskill.stages",
    "vla_torchrl.envs.toy",
    "vla_torchrl.envs.transforms.instruction",
    "vla_torchrl.envs.transforms.texture",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
