"""The main job behind `make demo` (README quickstart).

For now, a short end-to-end check of what exists: resolve the assets, render one ManiSkill frame on
this machine and save it. It grows into the full pipeline (demos -> SFT -> PPO -> OOD evaluation
-> report) as the recipes land.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_torchrl.assets import AssetPaths, configure_maniskill_assets
from vla_torchrl.utils import configure_vulkan, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="outputs/demo", help="where to write the results")
    args = parser.parse_args(argv)
    logger = setup_logging()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    paths = AssetPaths.resolve()
    configure_vulkan()
    configure_maniskill_assets(paths)
    import gymnasium as gym
    import imageio.v3 as iio
    import mani_skill.envs  # noqa: F401

    env = gym.make("PickCube-v1", obs_mode="rgb", sim_backend="cpu", render_backend="cpu")
    obs, _ = env.reset(seed=0)
    frame = obs["sensor_data"]["base_camera"]["rgb"][0].numpy()
    env.close()
    iio.imwrite(out / "frame.png", frame)
    logger.info("assets: %s", paths.root or "none (procedural fallback)")
    logger.info("rendered a %dx%d frame to %s", frame.shape[1], frame.shape[0], out / "frame.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
