"""``vla-torchrl-pretrain-vision``: pretrain a small VLA's vision towers on privileged frames.

The CPU scale's stand-in for OpenVLA's pretrained towers (issue 14): from demonstration frames
collected with ``vla-torchrl-collect privileged=true``, the towers and the projector learn where
the gripper, the object and the receptacle are (:mod:`vla_torchrl.training.vision_pretraining`).
The policy it writes is where SFT starts::

    vla-torchrl-collect episodes=350 seed=1 env=maniskill_cpu privileged=true expert_noise=0.01 \\
        out=data/demos-s1
    vla-torchrl-pretrain-vision 'demos=[data/demos-s1]' out=runs/pv
    # optional, more object placements than the demos show: one reset frame per scene
    vla-torchrl-collect env=maniskill_cpu privileged=true env.max_episode_steps=1 \\
        keep_failures=true filter_idle=false episodes=8000 seed=100 out=data/scenes
    vla-torchrl-pretrain-vision 'demos=[data/demos-s1]' 'scene_frames=[data/scenes]' out=runs/pv
    # scene_share=0.15 draws 15% of each minibatch from them (default: uniform over all frames)
    vla-torchrl-train algo=sft model=small env=maniskill_cpu model.init_from=runs/pv/policy \\
        'algo.demos=[data/demos-s1]' ...

Overrides (:class:`~vla_torchrl.config.cli_schema.PretrainVisionConfig`,
``conf/pretrain_vision.yaml``): ``steps``, ``batch_size``, ``lr``, the three ``*_coef``,
``model.arch.*`` and the rest. A rerun with the same ``out`` resumes from its checkpoint.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from vla_torchrl.config.cli_schema import PretrainVisionConfig, to_cli_config
from vla_torchrl.recipes._cli import run_cli

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``vla-torchrl-pretrain-vision key=value ...`` (see the module docstring)."""

    def task(dict_cfg) -> None:
        from vla_torchrl.training.vision_pretraining import pretrain_vision

        cfg = to_cli_config(PretrainVisionConfig, dict_cfg)
        out = pretrain_vision(cfg)
        records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        evals = [r for r in records if r.get("event") == "eval"]
        summary = {"out": str(out), "policy": str(out / "policy"), "heads": str(out / "heads.pt")}
        if evals:
            summary["held_out"] = {k: v for k, v in evals[-1].items() if k != "event"}
        print(json.dumps(summary))

    return run_cli(task, config_name="pretrain_vision", argv=argv, compose=True)


if __name__ == "__main__":
    sys.exit(main())
