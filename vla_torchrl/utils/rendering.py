"""Make SAPIEN (ManiSkill's renderer) find a Vulkan device, also on machines without a GPU.

SAPIEN renders through Vulkan. Without a GPU, Mesa's software driver (lavapipe, Mesa >= 24.3:
older versions lack ``VK_KHR_external_semaphore_fd``) provides one. ``scripts/setup.sh``
installs it; this module points the Vulkan loader at it for the project's processes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["configure_vulkan", "vulkan_icd_for_cpu"]

logger = logging.getLogger(__name__)

_ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
_NVIDIA_ICD_NAMES = ("nvidia_icd.json", "nvidia_icd.x86_64.json")


def vulkan_icd_for_cpu() -> Path | None:
    """Path of Mesa's lavapipe ICD manifest, or ``None`` when it is not installed."""
    for folder in _ICD_DIRS:
        manifest = Path(folder) / "lvp_icd.json"
        if manifest.is_file():
            return manifest
    return None


def _has_nvidia_icd() -> bool:
    return any((Path(d) / n).is_file() for d in _ICD_DIRS for n in _NVIDIA_ICD_NAMES)


def configure_vulkan() -> str | None:
    """Set ``VK_ICD_FILENAMES`` to lavapipe when no GPU driver is present and the user set nothing.

    Must run before SAPIEN creates its render system (importing ``vla_torchrl.envs`` does it).

    Returns:
        the ICD manifest in effect (``None``: the loader's default search is used).
    """
    for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES"):
        if os.environ.get(var):
            return os.environ[var]
    if _has_nvidia_icd():
        return None
    manifest = vulkan_icd_for_cpu()
    if manifest is None:
        logger.warning(
            "No Vulkan driver found: ManiSkill cannot render. Run `make setup` (installs Mesa's "
            "lavapipe >= 24.3) or install a GPU driver."
        )
        return None
    os.environ["VK_ICD_FILENAMES"] = str(manifest)
    return str(manifest)
