"""Every ``>>>`` example in the package's docstrings runs and prints what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import vla_torchrl

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(vla_torchrl.__path__, prefix="vla_torchrl.")
    if not info.name.rsplit(".", 1)[-1].startswith("_")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_most_public_modules_have_examples():
    """The house style asks for runnable examples; keep most modules documented that way."""
    with_examples = 0
    for name in MODULES:
        finder = doctest.DocTestFinder()
        tests = finder.find(importlib.import_module(name))
        with_examples += any(t.examples for t in tests)
    assert with_examples >= len(MODULES) // 2, f"only {with_examples}/{len(MODULES)} have examples"
