"""Names inside a run directory, in one place (a light module: importing it loads no torch).

Examples:
    >>> from pathlib import Path
    >>> Path("runs/ppo-ind-seed0") / POLICY_DIR
    PosixPath('runs/ppo-ind-seed0/policy')
"""

from __future__ import annotations

__all__ = ["BEST_POLICY_DIR", "LAST_POLICY_DIR", "POLICY_DIR"]

#: the final policy of a run (``save_policy`` / ``load_policy``; ``model.init_from=<run>/policy``)
POLICY_DIR = "policy"
#: SFT with in-simulator evaluation: the latest and the best evaluated policy
LAST_POLICY_DIR = "policy-last"
BEST_POLICY_DIR = "policy-best"
