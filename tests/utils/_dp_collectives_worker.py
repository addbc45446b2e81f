"""2-rank checks of the collectives without a model (run by test_distributed.py)."""

from __future__ import annotations

import json
import sys

import torch
from tensordict import TensorDict

from vla_torchrl.objectives import GroupRelativeAdvantage
from vla_torchrl.objectives.global_batch import (
    global_advantage_stats,
    global_group_relative_advantage,
)
from vla_torchrl.utils.distributed import destroy_distributed, init_distributed, reduce_metrics

REWARD = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.5, 0.0], [0.0, 2.0]])  # 4 envs x 2 steps


def main(out: str) -> None:
    info = init_distributed()
    rows = slice(2 * info.rank, 2 * info.rank + 2)
    td = TensorDict(
        {
            "next": {
                "reward": REWARD[rows].unsqueeze(-1),
                "done": torch.zeros(2, 2, 1, dtype=torch.bool),
            }
        },
        batch_size=[2, 2],
    )
    adv = global_group_relative_advantage(td, GroupRelativeAdvantage(mode="whole"), info)
    mean, std = global_advantage_stats(REWARD[rows].reshape(-1))(torch.zeros(1), None)
    metrics = reduce_metrics({"m": float(info.rank)}, info)
    result = {
        "adv": adv["advantage"].squeeze(-1).tolist(),
        "mean": mean.item(),
        "std": std.item(),
        "m": metrics["m"],
    }
    with open(f"{out}.{info.rank}", "w") as f:
        json.dump(result, f)
    destroy_distributed(info)


if __name__ == "__main__":
    main(sys.argv[1])
