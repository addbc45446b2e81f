"""Run the recipes modules' docstring examples (the default pytest run does not collect them)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "vla_torchrl.recipes.errors",
    "vla_torchrl.recipes.config",
    "vla_torchrl.recipes.checkpoint",
    "vla_torchrl.recipes.metrics_log",
    "vla_torchrl.recipes.report",
    "vla_torchrl.recipes.plot_curves",
    "vla_torchrl.recipes.run",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
