"""Localisation error of pretrained towers on training frames against held-out ones (issue 14).

A pretraining run (``vla-torchrl-pretrain-vision``'s ``out``: ``policy/`` + ``heads.pt``) is
scored on its own split of the demonstrations (the same ``val_fraction`` and seed, so the same
held-out episodes) with the package's ``perception_metrics``: on the held-out frames and on as
many training frames drawn at random. A large gap means the towers fit their frames better than
they generalise (more frames would help); no gap means the error is the towers' own floor.
``--held-demos`` also scores every frame of other demonstrations (e.g. a seed no run trained
on), decoded with the run's own target statistics from ``heads.pt``, so that runs trained on
different demonstrations are compared on the same frames.

    python docs/results/maniskill-cpu/perception_train_vs_held.py runs/pv-recipe \\
        --demos data/dart96-s1 data/dart96-s2 data/dart96-s3 data/dart96-s4 \\
        --held-demos data/dart96-s9
"""

import argparse
import json
import math

import torch

from vla_torchrl.keys import IMAGE_KEY
from vla_torchrl.training.perception_anchor import load_perception_heads
from vla_torchrl.training.policy import load_policy
from vla_torchrl.training.vision_pretraining import perception_data, perception_metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--demos", nargs="+", required=True)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-demos", nargs="*", default=[])
    a = p.parse_args()
    torch.manual_seed(0)
    data = perception_data(a.demos, val_fraction=a.val_fraction, seed=a.seed)
    bundle = load_policy(f"{a.run}/policy")
    model, image_processor = bundle.model.eval(), bundle.processor.image_processor
    with torch.no_grad():
        hidden = model.embed_images(image_processor(data.frames.get(IMAGE_KEY)[:1])).shape[-1]
    heads, saved_stats = load_perception_heads(f"{a.run}/heads.pt", hidden)
    for h in heads.values():
        h.eval()

    def encoder(images):
        return model.embed_images(image_processor(images))

    # decode with the statistics the run trained with (a run with scene_frames standardized
    # over more frames than these demos' training split)
    data.stats = saved_stats
    train = data.train[torch.randperm(len(data.train))[: len(data.held)]]
    splits = [("held-out", data, data.held), ("train", data, train)]
    if a.held_demos:
        other = perception_data(a.held_demos, val_fraction=0.0)
        other.stats = saved_stats  # decode with the run's statistics, not these frames'
        splits.append(("+".join(a.held_demos), other, torch.arange(len(other.state))))
    for name, frames, index in splits:
        m = perception_metrics(encoder, heads, frames, index)
        kp = m["keypoint_rmse_cm"]
        m["keypoint_3d_cm"] = [round(math.hypot(*kp[i : i + 3]), 2) for i in (0, 3, 6)]
        print(json.dumps({"run": a.run, "split": name, "frames": len(index), **m}))


if __name__ == "__main__":
    main()
