"""ManiSkill side of the benchmark: the "put O on R" task, registered on import.

Importing this package points ``MS_ASSET_DIR`` at the project's robot assets (when found) and
Vulkan at a CPU driver when no GPU driver exists, BEFORE ``mani_skill`` is imported: ManiSkill
reads ``MS_ASSET_DIR`` once, at import time.
"""

from __future__ import annotations

from vla_torchrl.assets import configure_maniskill_assets
from vla_torchrl.utils import configure_vulkan

configure_maniskill_assets()
configure_vulkan()

from vla_torchrl.envs.maniskill.put_on_task import PUT_ON_ENV_ID, PutOnTask  # noqa: E402
from vla_torchrl.envs.maniskill.scene import PutOnSceneConfig, widowx_available  # noqa: E402

__all__ = ["PUT_ON_ENV_ID", "PutOnSceneConfig", "PutOnTask", "widowx_available"]
