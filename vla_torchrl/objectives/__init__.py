"""objectives layer of vla_torchrl: the paper's RL objectives (Sec. 4.1, Appendix A.1)."""

from __future__ import annotations

from vla_torchrl.objectives import functional
from vla_torchrl.objectives.advantages import GAEAdvantage, GroupRelativeAdvantage

__all__ = ["GAEAdvantage", "GroupRelativeAdvantage", "functional"]
