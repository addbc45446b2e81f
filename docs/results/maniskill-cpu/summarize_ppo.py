"""Means of a PPO run's logged metrics per window of env steps (issue 14, tenth session).

    python summarize_ppo.py runs/ppo3-s0/metrics.jsonl --window 3200

Prints a markdown table: training success / grasp (the rollouts' episodes), approx. KL,
explained variance ("-" without a critic), the policy's entropy over the 7 action tokens,
and the periodic evaluation's success where one falls in the window. A run of
``ppo_perception.py`` also gets its perception losses on the demonstrations (flat / keypoint /
orientation; at the start they are the SFT run's final values).
"""

import argparse
import json
import math


def windows(rows: list[dict], width: int) -> list[tuple[int, int, list[dict]]]:
    """``rows`` (one per iteration, with ``step``) grouped by ``ceil(step / width)``."""
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(math.ceil(row["step"] / width), []).append(row)
    return [((k - 1) * width, k * width, groups[k]) for k in sorted(groups)]


def mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r and r[key] == r[key]]
    return sum(values) / len(values) if values else float("nan")


def fmt(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("metrics")
    p.add_argument("--window", type=int, default=3200)
    args = p.parse_args()
    with open(args.metrics) as f:
        rows = [json.loads(line) for line in f]
    rows = [r for r in rows if "train/success" in r]
    for r in rows:  # the package's PPOWithPerceptionLoss calls the flat head's loss "position"
        if "losses/perception_position" in r:
            r.setdefault("losses/perception_flat", r["losses/perception_position"])
    perception = any("losses/perception_flat" in r for r in rows)
    extra = " perception flat / kp / orient. |" if perception else ""
    print(
        "| env steps | success | grasped | approx. KL | explained variance | entropy (7 tokens) "
        "| eval success |" + extra
    )
    print("|---|---|---|---|---|---|---|" + ("---|" if perception else ""))
    for lo, hi, group in windows(rows, args.window):
        evals = [r["eval/success"] for r in group if "eval/success" in r]
        ev = f"{evals[-1]:.2f}" if evals else ""
        warm = " (critic warm-up)" if mean(group, "losses/critic_warmup") == 1.0 else ""
        print(
            f"| {lo:,}-{hi:,}{warm} | {mean(group, 'train/success'):.2f} | "
            f"{mean(group, 'train/grasped'):.2f} | {mean(group, 'losses/kl_approx'):.3f} | "
            f"{fmt(mean(group, 'losses/explained_variance'))} | "
            f"{mean(group, 'losses/entropy'):.1f} | {ev} |"
            + (
                " "
                + " / ".join(
                    f"{mean(group, f'losses/perception_{k}'):.2f}"
                    for k in ("flat", "keypoint", "orientation")
                )
                + " |"
                if perception
                else ""
            )
        )


if __name__ == "__main__":
    main()
