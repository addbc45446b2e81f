"""Held-out localisation error of pretrained towers against pretraining steps (issue 14).

Each curve is one or more ``pretrain_vision.py`` or ``vla-torchrl-pretrain-vision`` logs
(``log.jsonl``); logs given as ``A.jsonl+B.jsonl`` are one run in legs (B continued from A: its
steps are offset by A's last). Plots the keypoint head's 3-D RMSE (the norm of the x / y / z RMSEs) of the gripper and
the object, in cm.

    python docs/results/maniskill-cpu/plot_pretrain_curves.py \\
        "patchify stem:pretrain-vision-kp-log.jsonl+pretrain-vision-kpo-log.jsonl" \\
        "conv stem:pretrain-vision-conv-log.jsonl" --out pretrain-curves.png
"""

import argparse
import json
import math
from pathlib import Path


def keypoint_curve(legs: list[str]) -> list[tuple[int, float, float]]:
    """``(step, gripper_cm, object_cm)`` of the evaluations of a run's legs, steps offset so
    that each leg continues the last.

    Examples:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> rec = lambda s, e: json.dumps({"event": "eval", "step": s, "kp_rmse_cm": e})
        >>> a, b = os.path.join(d, "a.jsonl"), os.path.join(d, "b.jsonl")
        >>> _ = open(a, "w").write(rec(0, [3, 4, 0] * 4) + "\\n" + rec(10, [0, 3, 4] * 4))
        >>> _ = open(b, "w").write(rec(0, [0, 0, 1] + [0, 0, 2] + [0] * 6))
        >>> keypoint_curve([a, b])
        [(0, 5.0, 5.0), (10, 5.0, 5.0), (10, 1.0, 2.0)]
        >>> c = os.path.join(d, "c.jsonl")  # the package's log names the field keypoint_rmse_cm
        >>> _ = open(c, "w").write(json.dumps({"event": "eval", "step": 5,
        ...                                    "keypoint_rmse_cm": [0, 3, 4, 0, 0, 1] * 2}))
        >>> keypoint_curve([c])
        [(5, 5.0, 1.0)]
    """
    points, offset = [], 0
    for leg in legs:
        last = 0
        for line in Path(leg).read_text().splitlines():
            r = json.loads(line)
            # pretrain_vision.py logs kp_rmse_cm, vla-torchrl-pretrain-vision keypoint_rmse_cm
            e = r.get("kp_rmse_cm", r.get("keypoint_rmse_cm"))
            if r.get("event") != "eval" or e is None:
                continue
            points.append((offset + r["step"], math.hypot(*e[0:3]), math.hypot(*e[3:6])))
            last = r["step"]
        offset += last
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("curves", nargs="+", help="LABEL:LOG[+LOG...]")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for spec in a.curves:
        label, logs = spec.split(":", 1)
        pts = [q for q in keypoint_curve(logs.split("+")) if q[0] > 0]
        for ax, i, what in ((axes[0], 1, "gripper"), (axes[1], 2, "object")):
            ax.plot([q[0] for q in pts], [q[i] for q in pts], marker="o", ms=3, label=label)
            ax.set_title(f"{what}: held-out 3-D RMSE of the keypoint head")
    for ax in axes:
        ax.set_xlabel("pretraining steps (batch 64)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks([0.5, 1, 2, 3, 5])
        ax.axhspan(
            0.3 * math.sqrt(3),
            0.4 * math.sqrt(3),
            color="green",
            alpha=0.15,
            label="3-4 mm per axis (the state ceiling's need)",
        )
    axes[0].set_ylabel("3-D RMSE (cm)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(a.out)


if __name__ == "__main__":
    main()
