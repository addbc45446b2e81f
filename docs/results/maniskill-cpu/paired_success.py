"""Per-policy grasp / hold / success, and the paired success difference against SFT, on one
seed's episodes and on all of them (issue 14, eleventh session).

    python paired_success.py runs/eval256-ppo3/episodes.jsonl --baseline SFT --seed 1000

The evaluation report (``vla-torchrl-eval``) pools the seeds; this also prints the slice of the
issue's 64 held-out episodes (seed 1000), with the Wilson interval of each rate, the paired
difference (normal interval over the episode pairs) and the exact McNemar p-value, and the
McNemar p-values of the grasp and hold differences.
"""

import argparse
import math

from vla_torchrl.evaluation.results import load_results
from vla_torchrl.utils.stats import mcnemar_exact


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def table(rows: list, baseline: str) -> None:
    base = {(r.seed, r.episode_id): r for r in rows if r.policy == baseline}
    print("| policy | grasped | held | success [95% Wilson] | paired diff. [95% CI], McNemar |")
    print("|---|---|---|---|---|")
    for policy in dict.fromkeys(r.policy for r in rows):
        mine = [r for r in rows if r.policy == policy]
        n = len(mine)
        k = sum(r.success for r in mine)
        lo, hi = wilson(k, n)
        grasped = sum(r.grasped for r in mine)
        held = sum(r.continuous_grasp for r in mine)
        cells = f"| {policy} | {grasped}/{n} | {held}/{n} | {k}/{n} = {k / n:.1%} [{lo:.2f}, {hi:.2f}] |"
        if policy == baseline:
            print(cells + " - |")
            continue
        pairs = [(base[(r.seed, r.episode_id)], r) for r in mine if (r.seed, r.episode_id) in base]
        diff = [int(r.success) - int(b.success) for b, r in pairs]
        mean = sum(diff) / len(diff)
        se = math.sqrt(sum((d - mean) ** 2 for d in diff) / (len(diff) - 1) / len(diff))
        p = {}
        for metric in ("success", "grasped", "continuous_grasp"):
            only_base = sum(getattr(b, metric) and not getattr(r, metric) for b, r in pairs)
            only_mine = sum(getattr(r, metric) and not getattr(b, metric) for b, r in pairs)
            p[metric] = (only_base, only_mine, mcnemar_exact(only_base, only_mine))
        s = p["success"]
        print(
            f"{cells} {mean:+.3f} [{mean - 1.96 * se:+.2f}, {mean + 1.96 * se:+.2f}], "
            f"{s[0]} vs {s[1]} episodes, p = {s[2]:.3g} (n = {len(pairs)}); grasped p = "
            f"{p['grasped'][2]:.2g}, held p = {p['continuous_grasp'][2]:.2g} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("episodes")
    parser.add_argument("--baseline", default="SFT")
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    rows = load_results(args.episodes)
    print(f"## seed {args.seed}")
    table([r for r in rows if r.seed == args.seed], args.baseline)
    print(f"## all {len({(r.seed, r.episode_id) for r in rows})} episodes")
    table(rows, args.baseline)


if __name__ == "__main__":
    main()
