"""Plot the state-based BC ceiling against perception noise (state_bc_ceiling.py's logs).

Success, grasp and continuous grasp of the closed loop, greedy, against the noise on the
positions (cm per axis), per-step and per-episode noise, with 95% Wilson intervals; the image
policies' held-out success rates, if given, as horizontal marks.

    python docs/results/maniskill-cpu/plot_state_ceiling.py state-bc-log.jsonl \
        state-bc-noise-log.jsonl --out state-bc-ceiling.png --image-policy "DART SFT, T=0.6:1/64" \
        --perception-rmse-cm 1.5,2.2
"""

import argparse
import json
from pathlib import Path

from vla_torchrl.utils.stats import wilson_interval


def closed_loop_records(paths):
    """The ``closed_loop`` events of the logs: greedy, of models trained on exact state; noise kind
    "step" where absent."""
    recs = []
    for p in paths:
        for line in Path(p).read_text().splitlines():
            r = json.loads(line)
            exact_trained = r.get("train_noise_cm", 0.0) == 0.0  # not --train-noise-cm runs
            if (
                r.get("event") == "closed_loop"
                and r.get("temperature") == "greedy"
                and exact_trained
            ):
                r.setdefault("position_noise_cm", 0.0)
                r.setdefault("noise_kind", "step")
                recs.append(r)
    return recs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("logs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--image-policy", action="append", default=[], help="label:k/n")
    p.add_argument(
        "--perception-rmse-cm", default=None, help="lo,hi: the image towers' held-out RMSE range"
    )
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = closed_loop_records(a.logs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"step": "-o", "episode": "--s"}
    colours = {"success": "C0", "grasped": "C1", "continuous_grasp": "C2"}
    for kind in ("step", "episode"):
        rows = [r for r in recs if r["noise_kind"] == kind or r["position_noise_cm"] == 0]
        rows = sorted(rows, key=lambda r: r["position_noise_cm"])
        if len(rows) < 2:
            continue
        xs = [r["position_noise_cm"] for r in rows]
        for metric, colour in colours.items():
            ys = [r[metric] for r in rows]
            ks = [round(r[metric] * r["n"]) for r in rows]
            lo_hi = [wilson_interval(k, r["n"]) for k, r in zip(ks, rows, strict=True)]
            err = [
                [y - lo for y, (lo, _) in zip(ys, lo_hi)],
                [hi - y for y, (_, hi) in zip(ys, lo_hi)],
            ]
            label = f"{metric.replace('_', ' ')} ({'per-step' if kind == 'step' else 'per-episode'} noise)"
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                fmt=styles[kind],
                color=colour,
                capsize=3,
                label=label,
                alpha=1.0 if kind == "step" else 0.6,
            )
    for i, spec in enumerate(a.image_policy):
        label, frac = spec.rsplit(":", 1)
        k, n = (int(v) for v in frac.split("/"))
        ax.axhline(k / n, color=f"C{3 + i}", lw=1, ls=":", label=f"image policy: {label} ({k}/{n})")
    if a.perception_rmse_cm:
        lo, hi = (float(v) for v in a.perception_rmse_cm.split(","))
        ax.axvspan(lo, hi, color="grey", alpha=0.15, label=f"image towers' RMSE ({lo}-{hi} cm)")
    ax.axhline(0.40, color="grey", lw=0.8, ls="-.", label="issue 14 SFT target (40%)")
    ax.set_xlabel("noise on the gripper / object / plate positions (cm per axis)")
    ax.set_ylabel("fraction of 64 held-out episodes")
    ax.set_ylim(-0.02, 1.0)
    ax.set_title("BC from the simulator state, same demos and tokens, greedy")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
