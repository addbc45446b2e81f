"""Small helpers shared by every layer: device selection, seeding, logging, CPU rendering."""

from __future__ import annotations

from vla_torchrl.utils.device import select_device
from vla_torchrl.utils.logging import setup_logging
from vla_torchrl.utils.rendering import configure_vulkan, vulkan_icd_for_cpu
from vla_torchrl.utils.seeding import seed_everything

__all__ = [
    "configure_vulkan",
    "seed_everything",
    "select_device",
    "setup_logging",
    "vulkan_icd_for_cpu",
]
