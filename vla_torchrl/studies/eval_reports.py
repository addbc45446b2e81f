"""Reports of the studies that evaluate policies rather than plot training curves.

* ``sft_demos`` (Fig. 6a/b): every SFT policy is evaluated (``vla-torchrl-eval``'s
  :func:`~vla_torchrl.evaluation.eval_loop.evaluate`, evaluation temperature) on the IND task and,
  on ManiSkill, the unseen-object/table tasks; the figure plots grasp, continuous grasp and
  success against the number of demonstrations, mean +- std over training seeds. Here the
  training seed is the unit (one policy per seed), so the table's 95% interval is the t-interval
  over those seeds (``t_{k-1}``, clipped to [0, 1]), with the episodes behind each cell.
* ``sft_vs_rl`` (Fig. 7, Tables 1-3): the SFT policy and the RL policy trained from it are
  evaluated on the whole task suite; the report (tables, relative drops, radars) is
  :func:`~vla_torchrl.evaluation.report_writer.write_report`'s.
* ``coverage`` (Fig. 8): positions visited by the SFT demonstrations vs by rollouts of the RL
  policy (training temperature), as two scatter plots coloured by time step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_torchrl.envs.toy import toy_oracle_steps
from vla_torchrl.errors import UserError
from vla_torchrl.keys import DONE_KEY, STATE_KEY, next_key
from vla_torchrl.training.paths import POLICY_DIR
from vla_torchrl.utils import select_device
from vla_torchrl.utils.stats import mean_std, t_interval

__all__ = ["coverage_report", "grid_coverage", "sft_eval_report", "sft_vs_rl_report"]

_METRICS = ("grasped", "continuous_grasp", "success")
_EPISODES = {"tiny": 4, "cpu": 32, "paper": 64}
# Fig. 6: IND and the unseen objects / tables (ManiSkill); the toy backend has IND only
_SFT_TASKS = {"toy": ("ind",), "maniskill": ("ind", "obj", "table")}


def _config(run):
    from vla_torchrl.config.load import compose_config

    return compose_config(list(run.overrides), config_name=run.config_name)


def _eval_kwargs(cfg, scale: str) -> dict[str, Any]:
    return {
        "backend": cfg.env.backend,
        "num_envs": min(cfg.env.num_envs, 8),
        "max_episode_steps": cfg.env.max_episode_steps,
        "width": cfg.env.width,
        "height": cfg.env.height,
        "temperature": cfg.model.eval_temperature,  # paper: 0.6
        "device": select_device(cfg.device).type,  # device=auto: the GPU when there is one
        "episodes": _EPISODES[scale],
        "videos_per_task": 0,
    }


def _require_policies(runs) -> None:
    missing = [
        r.run_dir for r in runs if not (Path(r.run_dir) / POLICY_DIR / "policy.json").is_file()
    ]
    if missing:
        raise UserError(f"runs without a saved policy: {missing}; run the study first")


def _markdown(title: str, command: str, seeds, body: list[str], notes: str = "") -> str:
    text = [f"# {title}", ""]
    if command:
        text += ["Command:", "", "```bash", command, "```", ""]
    if seeds:
        text += [f"Seeds: {', '.join(map(str, seeds))}.", ""]
    text += body
    if notes:
        text += ["", notes]
    return "\n".join(text) + "\n"


def sft_eval_report(
    study, variants, out: Path, scale: str, *, name: str, title: str, command: str, seeds
) -> dict[str, Path]:
    """Fig. 6a/b: evaluate each SFT policy; metrics vs number of demonstrations."""
    from vla_torchrl.evaluation.eval_loop import evaluate
    from vla_torchrl.evaluation.results import load_results

    _require_policies(variants)
    cfg = _config(variants[0])
    tasks = _SFT_TASKS[cfg.env.backend]
    values = {v.label: v.value for v in study.variants(scale)}
    policies = {f"{r.label}|seed{r.seed}": str(Path(r.run_dir) / POLICY_DIR) for r in variants}
    evaluate(
        policies, tasks=list(tasks), seeds=[0], out_dir=out / "eval", **_eval_kwargs(cfg, scale)
    )
    results = load_results(out / "eval" / "episodes.jsonl")
    # per (variant, seed, task): episode means; then mean +- std over training seeds
    per: dict[tuple[str, str], dict[str, list[float]]] = {}
    episodes: dict[tuple[str, str], int] = {}
    for label in policies:
        variant = label.split("|")[0]
        for task in tasks:
            eps = [r for r in results if r.policy == label and r.task == task]
            if not eps:
                continue
            cell = per.setdefault((variant, task), {m: [] for m in _METRICS})
            episodes[(variant, task)] = episodes.get((variant, task), 0) + len(eps)
            for m in _METRICS:
                cell[m].append(sum(getattr(e, m) for e in eps) / len(eps))
    stats = {key: {m: mean_std(v) for m, v in cell.items()} for key, cell in per.items()}
    fig = _sft_figure(stats, values, tasks, title)
    png = out / f"{name}.png"
    fig.savefig(png)
    header = ["demos", "task", "seeds", "episodes", *(f"{m}" for m in _METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (variant, task), cell in stats.items():
        first = cell[_METRICS[0]]
        lines.append(
            "| "
            + " | ".join(
                [str(values[variant]), task, str(first.n), str(episodes[(variant, task)])]
                + [_with_interval(cell[m], per[(variant, task)][m]) for m in _METRICS]
            )
            + " |"
        )
    body = [
        f"![{name}]({png.name})",
        "",
        *lines,
        "",
        "Mean +- std over training seeds of the "
        f"episode means ({_EPISODES[scale]} evaluation episodes per policy and task), then "
        "[the 95% t-interval over the training seeds] (mean +- t_{k-1} sd / sqrt(k), sample sd, "
        "clipped to [0, 1]; one policy per training seed, so the seed is the unit; n/a with one "
        "seed).",
    ]
    md = out / "summary.md"
    md.write_text(_markdown(title, command, seeds, body, study.notes))
    js = out / "summary.json"
    js.write_text(
        json.dumps(
            [
                {
                    "variant": v,
                    "demos": values[v],
                    "task": t,
                    "seeds": c[_METRICS[0]].n,
                    "episodes": episodes[(v, t)],
                    **{m: s.mean for m, s in c.items()},
                    **{f"{m}_std": s.std for m, s in c.items()},
                    **{f"{m}_ci": _clipped(t_interval(per[(v, t)][m])) for m in c},
                }
                for (v, t), c in stats.items()
            ],
            indent=1,
        )
    )
    return {"figure": png, "markdown": md, "json": js}


def _clipped(interval):
    return None if interval is None else [max(0.0, interval[0]), min(1.0, interval[1])]


def _with_interval(stat, seed_values) -> str:
    """``"mean +- std [low, high]"``: mean +- std over seeds and the 95% t-interval (clipped).

    Examples:
        >>> seeds = [0.5, 0.625, 0.75]  # 3 training seeds: 0.625 +- 4.303 * 0.125 / sqrt(3)
        >>> _with_interval(mean_std(seeds), seeds)
        '0.625 +- 0.102 [0.314, 0.936]'
        >>> _with_interval(mean_std([0.5]), [0.5])
        '0.500 +- 0.000 [n/a]'
    """
    ci = _clipped(t_interval(seed_values))
    return stat.format() + (" [n/a]" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")


def _sft_figure(stats, values, tasks, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(_METRICS), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for col, metric in enumerate(_METRICS, start=1):
        ax = fig.add_subplot(1, len(_METRICS), col)
        for task in tasks:
            pts = sorted(
                (values[v], s[metric]) for (v, t), s in stats.items() if t == task and s[metric].n
            )
            if not pts:
                continue
            xs = np.array([p[0] for p in pts], dtype=float)
            mean = np.array([p[1].mean for p in pts])
            std = np.array([p[1].std for p in pts])
            (line,) = ax.plot(xs, mean, marker="o", label=task.upper())
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("demonstrations (episodes)")
        ax.set_ylabel(metric)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sft_vs_rl_report(
    sft_run, variants, out: Path, scale: str, *, name: str, title: str, command: str, seeds
) -> dict[str, Path]:
    """Fig. 7 / Tables 1-3: SFT vs RL on every task of the backend, over the study's seeds.

    The RL policy of the first training seed is evaluated (the paper: the converged RL policy),
    on environment seeds = the study's seeds (the paper: 3).
    """
    from vla_torchrl.evaluation.eval_loop import evaluate
    from vla_torchrl.training.environments import task_names

    _require_policies([sft_run, *variants])
    cfg = _config(variants[0])
    policies = {"SFT": str(sft_run.policy_dir), "RL": str(Path(variants[0].run_dir) / POLICY_DIR)}
    files = evaluate(
        policies,
        tasks=task_names(cfg.env.backend),
        seeds=list(seeds),
        out_dir=out / "eval",
        **_eval_kwargs(cfg, scale),
    )
    report_md = next((p for p in files.values() if str(p).endswith(".md")), None)
    pngs = [p for p in files.values() if str(p).endswith(".png")]
    body = [f"![{p.stem}]({p.relative_to(out)})" for p in pngs]
    if report_md is not None:
        rel = report_md.relative_to(out)
        body += ["", f"Tables in the layout of Tables 1-3, relative drops, radars: [{rel}]({rel})."]
    md = out / "summary.md"
    md.write_text(_markdown(title, command, seeds, body))
    result = {"markdown": md, **{f"report_{k}": Path(v) for k, v in files.items()}}
    if pngs:
        result["figure"] = pngs[0]
    return result


def grid_coverage(points: np.ndarray, *, cells: int = 16, low=-1.0, high=1.0) -> float:
    """Fraction of a ``cells x cells`` grid over ``[low, high]^2`` that ``points`` [N, 2] visit.

    Examples:
        >>> grid_coverage(np.array([[-0.9, -0.9], [0.9, 0.9], [0.95, 0.95]]), cells=2)
        0.5
    """
    if len(points) == 0:
        return 0.0
    idx = np.clip(((points - low) / (high - low) * cells).astype(int), 0, cells - 1)
    return len({(int(a), int(b)) for a, b in idx}) / cells**2


def _toy_demo_states(cfg, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """States (and time steps) of the toy oracle episodes the SFT run trained on."""
    steps, times = toy_oracle_steps(
        episodes, seed=cfg.seed, image_size=cfg.env.width, max_steps=cfg.env.max_episode_steps
    )
    return steps.get(STATE_KEY).numpy(), times.numpy()


def _rl_states(cfg, policy_dir: Path, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """States (and time steps) of RL rollouts at the training temperature (until done)."""
    from vla_torchrl.training.environments import make_recipe_env
    from vla_torchrl.training.policy import load_policy

    bundle = load_policy(policy_dir, device="cpu")
    actor = bundle.eval_actor(temperature=cfg.model.temperature)
    env = make_recipe_env(cfg.env, seed=cfg.seed, num_envs=episodes, device="cpu")
    try:
        with torch.no_grad():
            rollout = env.rollout(cfg.env.max_episode_steps, actor, break_when_any_done=False)
    finally:
        env.close()
    state = rollout.get(STATE_KEY)  # [B, T, 2]
    done = rollout.get(next_key(DONE_KEY)).squeeze(-1)
    # keep each env's first episode: steps up to and including its first done
    alive = (done.cumsum(-1) - done.long()) == 0
    t = torch.arange(state.shape[1]).expand(state.shape[0], -1)
    return state[alive].numpy(), t[alive].numpy()


def coverage_report(
    sft_run, variants, out: Path, *, name: str, title: str, command: str, seeds, notes: str = ""
) -> dict[str, Path]:
    """Fig. 8: positions of the SFT demonstrations vs RL rollouts (toy env: the dot's x, y)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _require_policies([sft_run, *variants])
    sft_cfg = _config(sft_run)
    rl_cfg = _config(variants[0])
    if rl_cfg.env.backend != "toy":
        raise UserError(
            "the coverage study needs end-effector positions; the ManiSkill env's state key holds "
            "joint positions only, so it runs on the toy backend for now (scale=cpu)"
        )
    sets = {
        f"SFT demonstrations ({sft_cfg.algo.demo_episodes} episodes)": _toy_demo_states(
            sft_cfg, sft_cfg.algo.demo_episodes
        ),
        f"RL rollouts ({rl_cfg.env.num_envs} episodes, T={rl_cfg.model.temperature})": _rl_states(
            rl_cfg, Path(variants[0].run_dir) / POLICY_DIR, rl_cfg.env.num_envs
        ),
    }
    fig = Figure(figsize=(9.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    rows = []
    for col, (label, (pts, ts)) in enumerate(sets.items(), start=1):
        ax = fig.add_subplot(1, 2, col)
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=ts, cmap="viridis", s=8, alpha=0.7, label=label)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(sc, ax=ax, label="time step")
        cover = grid_coverage(pts)
        rows.append(f"| {label} | {len(pts)} | {cover:.3f} | {pts.std(axis=0).mean():.3f} |")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = out / f"{name}.png"
    fig.savefig(png)
    table = [
        "| set | states | grid coverage (16x16) | position std |",
        "|---|---|---|---|",
        *rows,
    ]
    md = out / "summary.md"
    md.write_text(_markdown(title, command, seeds, [f"![{name}]({png.name})", "", *table], notes))
    return {"figure": png, "markdown": md}
