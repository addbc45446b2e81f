"""The README's Python examples run as written (those needing a real checkpoint are skipped)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
NEEDS_REAL_CHECKPOINT = 'build_policy("checkpoint"'


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    code = BLOCKS[index]
    if NEEDS_REAL_CHECKPOINT in code:
        pytest.skip("needs a real OpenVLA checkpoint directory")
    exec(compile(code, f"README.md[python block {index}]", "exec"), {"__name__": "readme"})
