"""``vla-torchrl-plan``: will this training config fit my GPU? Estimated on the CPU, in minutes.

Takes the same Hydra overrides as ``vla-torchrl-train`` and estimates, with fake tensors and the
project's real modules (:mod:`vla_torchrl.planning`), the peak GPU memory of one update step
and one rollout step (prefill + 7 cached decode steps at ``env.num_envs``) by category, then
says whether it fits ``--gpu-memory`` GiB with a margin. When it does not, it tries the settings
that would (gradient checkpointing, smaller minibatches with more accumulation, fewer envs per
rollout) and lists FSDP2 over 2/4/8 ranks (analytic). No real model memory is allocated (7B:
about 1.3 GB of RSS).

Usage::

    vla-torchrl-plan --gpu-memory 24                                 # the paper's PPO, 7B
    vla-torchrl-plan --gpu-memory 48 algo.critic=separate model.gradient_checkpointing=true
    vla-torchrl-plan gpu_memory=80 optim.minibatch_size=2 optim.grad_accum_steps=80
    vla-torchrl-plan --config-name train_cpu --gpu-memory 8 --json plan.json   # the tiny model

``model.name=openvla`` uses the 7B layout (or ``model.checkpoint``'s ``config.json``; no
weights are read). Extra keys ``gpu_memory=``, ``margin=`` and ``world_size=`` (FSDP2 ranks for
the per-GPU figure) may be given as overrides too.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from vla_torchrl.config.load import compose_config
from vla_torchrl.config.train_schema import TrainConfig
from vla_torchrl.errors import UserError
from vla_torchrl.planning.advice import fits, format_table, fsdp2_per_gpu, gib, summary
from vla_torchrl.planning.memory import MemoryEstimate, estimate_memory
from vla_torchrl.recipes._cli import run_cli
from vla_torchrl.training.policy import _policy_kwargs, built_model_config

__all__ = ["estimate_for_config", "main", "plan_settings"]

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results.jsonl"
_LOSSES = {"ppo": "ppo", "ppo-orz": "ppo", "grpo": "grpo", "grpo-s": "grpo", "sft": "sft"}
_EXTRA_KEYS = ("gpu_memory", "margin", "world_size")


def estimate_for_config(cfg: TrainConfig) -> MemoryEstimate:
    """The planner's estimate for a training config (see the module docstring)."""
    if cfg.algo.name not in _LOSSES:
        raise UserError(
            f"algo.name={cfg.algo.name} is not planned yet (its loss runs on trajectories); "
            f"plan one of {', '.join(_LOSSES)}"
        )
    model = built_model_config(cfg.model)  # model.init_from: the saved policy's architecture
    kwargs: dict[str, Any] = _policy_kwargs(model, cfg.algo.critic, (cfg.optim.lr, 3e-3))
    source = "small" if model.name == "small" else "tiny"
    if model.name == "openvla" or model.checkpoint:
        source = "random"
        if model.checkpoint:
            from vla_torchrl.modules import OpenVLAConfig

            kwargs["config"] = OpenVLAConfig.from_json(model.checkpoint)
    elif model.arch:
        kwargs["overrides"] = dict(model.arch)
    return estimate_memory(
        model_source=source,
        policy_kwargs=kwargs,
        loss=_LOSSES[cfg.algo.name],
        minibatch_size=cfg.optim.minibatch_size,
        grad_accum_steps=cfg.optim.grad_accum_steps,
        num_envs=cfg.env.num_envs,
        frame_hw=(cfg.env.height, cfg.env.width),
        max_grad_norm=cfg.optim.max_grad_norm,
        betas=tuple(cfg.optim.betas),
        weight_decay=cfg.optim.weight_decay,
        autocast=cfg.optim.autocast,
        verify_steps=cfg.optim.verify_steps,
    )


def _describe(cfg: TrainConfig) -> dict[str, Any]:
    model = built_model_config(cfg.model)
    return {
        "model": model.name,
        "init_from": model.init_from,
        "arch": dict(model.arch),
        "finetune": model.finetune,
        "lora_rank": model.lora_rank,
        "dtype": model.dtype,
        "algo": cfg.algo.name,
        "critic": cfg.algo.critic,
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "minibatch_size": cfg.optim.minibatch_size,
        "grad_accum_steps": cfg.optim.grad_accum_steps,
        "autocast": cfg.optim.autocast,
        "verify_steps": cfg.optim.verify_steps,
        "num_envs": cfg.env.num_envs,
        "frame": [cfg.env.height, cfg.env.width],
    }


def _candidates(cfg: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """Settings to try when ``cfg`` does not fit, cheapest change first (same transitions per
    optimizer step: minibatch x accumulation is kept)."""
    per_step = cfg.optim.minibatch_size * cfg.optim.grad_accum_steps
    out: list[tuple[str, TrainConfig]] = []
    gc = cfg.model.gradient_checkpointing
    models = (
        [(False, cfg.model)]
        if gc
        else [(False, cfg.model), (True, replace(cfg.model, gradient_checkpointing=True))]
    )
    for with_gc, model in models[::-1]:
        mb = cfg.optim.minibatch_size
        sizes = [mb] + [m for m in (4, 2, 1) if m < mb and per_step % m == 0]
        for m in sizes:
            if m == mb and not with_gc:
                continue
            optim = replace(cfg.optim, minibatch_size=m, grad_accum_steps=per_step // m)
            label = " ".join(
                (["model.gradient_checkpointing=true"] if with_gc else [])
                + (
                    [f"optim.minibatch_size={m} optim.grad_accum_steps={per_step // m}"]
                    if m != mb
                    else []
                )
            )
            out.append((label, replace(cfg, model=model, optim=optim)))
    return out


def plan_settings(
    cfg: TrainConfig,
    gpu_gib: float,
    *,
    margin: float = 0.10,
    search: bool = True,
    max_candidates: int = 4,
    world_size: int = 1,
) -> tuple[dict[str, Any], MemoryEstimate]:
    """Estimate ``cfg``, say whether it fits ``gpu_gib``, and (``search``) what would.

    Args:
        world_size: FSDP2 ranks: the verdict is then about the per-GPU peak (analytic).

    Returns:
        ``(result, estimate)``: a JSON-ready dict (``config``, ``estimate`` in GiB, ``fits``,
        ``fsdp2``: per-GPU peaks for 2/4/8 (and ``world_size``) ranks, ``suggestions``:
        settings that fit, ``rollout_num_envs``: the largest ``env.num_envs`` whose rollout
        fits, when it does not) and the single-GPU :class:`MemoryEstimate`.
    """
    est = estimate_for_config(cfg)
    per_rank = fsdp2_per_gpu(est, world_size)
    ok = fits(max(per_rank.values()), gpu_gib, margin=margin)
    out: dict[str, Any] = {
        "config": _describe(cfg),
        "gpu_memory_gib": gpu_gib,
        "margin": margin,
        "estimate": summary(est),
        "world_size": world_size,
        "fits": ok,
        "fsdp2": {},
        "suggestions": [],
    }
    for n in sorted({2, 4, 8, world_size} - {1}):
        per_gpu = fsdp2_per_gpu(est, n)
        out["fsdp2"][str(n)] = {
            "update": gib(per_gpu["update"]),
            "rollout": gib(per_gpu["rollout"]),
            "fits": fits(max(per_gpu.values()), gpu_gib, margin=margin),
        }
    if not fits(est.rollout_peak, gpu_gib, margin=margin):
        out["rollout_num_envs"] = _rollout_envs(est, cfg.env.num_envs, gpu_gib, margin)
    if ok or not search:
        return out, est
    for label, candidate in _candidates(cfg)[:max_candidates]:
        cand = estimate_for_config(candidate)
        if fits(cand.update_peak, gpu_gib, margin=margin):
            out["suggestions"].append(
                {
                    "overrides": label,
                    "update_peak": gib(cand.update_peak),
                    "rollout_peak": gib(cand.rollout_peak),
                    "fits": fits(cand.peak, gpu_gib, margin=margin),
                }
            )
            break  # the cheapest change that fits the update
    return out, est


def _rollout_envs(est: MemoryEstimate, num_envs: int, gpu_gib: float, margin: float) -> int:
    """The largest env count whose rollout fits, scaling the rollout's activations (KV cache,
    prefill) linearly in the number of envs; 0 when even the weights do not fit."""
    fixed = est.rollout_peak - est.rollout["activations"]
    per_env = est.rollout["activations"] / max(num_envs, 1)
    budget = (1.0 - margin) * gpu_gib * 2**30 - fixed
    return max(0, min(num_envs, int(budget // per_env))) if per_env else num_envs


def _split_extra(overrides: Sequence[str]) -> tuple[list[str], dict[str, float]]:
    rest, extra = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key in _EXTRA_KEYS:
            try:
                extra[key] = float(value)
            except ValueError as err:
                raise UserError(f"{item!r}: {key} must be a number") from err
        else:
            rest.append(item)
    return rest, extra


def _report(result: dict[str, Any], est_table: str) -> str:
    lines = [est_table, ""]
    cfg, e = result["config"], result["estimate"]
    gpu, margin = result["gpu_memory_gib"], result["margin"]
    verdict = "FITS" if result["fits"] else "DOES NOT FIT"
    n = result["world_size"]
    peak = (
        e["peak"]
        if n == 1
        else max(result["fsdp2"][str(n)]["update"], result["fsdp2"][str(n)]["rollout"])
    )
    where = "" if n == 1 else f" per GPU under FSDP2 over {n}"
    lines.append(
        f"peak {peak:.2f} GiB{where} vs {gpu:g} GiB card ({margin:.0%} margin kept free): {verdict}"
    )
    lines.append(
        f"(sequence {e['sequence_length']} tokens, minibatch {cfg['minibatch_size']} x "
        f"{cfg['grad_accum_steps']}, {cfg['num_envs']} envs; estimate {e['seconds']:.0f} s)"
    )
    lines.append("FSDP2 per GPU (analytic: decoder layers sharded by N, activations unchanged):")
    for n, v in result["fsdp2"].items():
        mark = "fits" if v["fits"] else "does not fit"
        lines.append(
            f"  N={n}: update {v['update']:.2f} GiB, rollout {v['rollout']:.2f} GiB ({mark})"
        )
    if "rollout_num_envs" in result:
        lines.append(
            f"rollout: at most env.num_envs={result['rollout_num_envs']} fits "
            "(activations scaled linearly in the envs)"
        )
    for s in result["suggestions"]:
        lines.append(
            f"would fit the update: {s['overrides']} -> update {s['update_peak']:.2f} GiB, "
            f"rollout {s['rollout_peak']:.2f} GiB"
        )
    if not result["fits"] and not result["suggestions"]:
        lines.append("no single-GPU setting tried fits; see FSDP2 above")
    return "\n".join(lines)


def record(result: dict[str, Any], path: Path = RESULTS) -> dict[str, Any]:
    """Append the plan as a benchmark record (device ``CPU (fake tensors)``)."""
    import torch

    entry = {
        "benchmark": "memory_plan",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": "CPU (fake tensors)",
        "machine": platform.machine(),
        "versions": {"torch": torch.__version__},
        "config": result["config"],
        "results": {
            "update_gib": result["estimate"]["update"],
            "update_peak_gib": result["estimate"]["update_peak"],
            "rollout_gib": result["estimate"]["rollout"],
            "rollout_peak_gib": result["estimate"]["rollout_peak"],
            "fsdp2_per_gpu_gib": result["fsdp2"],
            "sequence_length": result["estimate"]["sequence_length"],
            "estimate_s": result["estimate"]["seconds"],
            "max_rss_gib": result.get("max_rss_gib"),
        },
    }
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vla-torchrl-plan", description=__doc__.split("\n")[0])
    parser.add_argument("--config-name", default="train", help="train (paper, 7B) or train_cpu")
    parser.add_argument("--gpu-memory", type=float, default=None, help="card size in GiB (24)")
    parser.add_argument("--margin", type=float, default=None, help="fraction kept free (0.1)")
    parser.add_argument("--json", default=None, help="also write the result as JSON here")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--no-search", action="store_true", help="do not try other settings")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/results.jsonl")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as vla-torchrl-train")
    args = parser.parse_args(argv)
    overrides, extra = _split_extra(args.overrides)
    gpu = args.gpu_memory if args.gpu_memory is not None else extra.get("gpu_memory", 24.0)
    margin = args.margin if args.margin is not None else extra.get("margin", 0.10)
    if gpu <= 0:
        raise UserError(f"--gpu-memory={gpu} must be > 0 (GiB, e.g. 24, 40, 48, 80, 141)")
    cfg = compose_config(overrides, config_name=args.config_name)
    world_size = int(extra.get("world_size", 1))
    if world_size < 1:
        raise UserError(f"world_size={world_size} must be >= 1 (FSDP2 ranks)")
    result, est = plan_settings(
        cfg, gpu, margin=margin, search=not args.no_search, world_size=world_size
    )
    result["max_rss_gib"] = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        title = (
            f"vla-torchrl-plan: {cfg.model.name} {cfg.algo.name} critic={cfg.algo.critic} "
            f"GC={cfg.model.gradient_checkpointing} (GiB; max RSS {result['max_rss_gib']} GiB)"
        )
        print(_report(result, format_table(est, title=title)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.record:
        record(result)
    return 0


def cli() -> int:
    """Console entry point: user errors end in one line (``--debug`` shows the traceback)."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
