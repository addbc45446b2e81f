"""One GPU check (<= 8 minutes on one CUDA GPU): sim, 7B rollout, PPO update memory, overhead.

Run through ``benchmarks/gpu_suite.sh`` (or ``python benchmarks/gpu_suite.py`` from the repo
with ``PYTHONPATH=.``). Each step appends one JSON record to ``benchmarks/results.jsonl``:

1. ``sim``: ManiSkill GPU simulation of ``ind`` with 64 envs at 640x480: build, reset, 100
   steps of random actions, env steps/s, and a non-blank frame check.
2. ``rollout``: a 7B-layout random-init policy (bf16, LoRA r32, shared critic), one actor call
   (prefill + 7 KV-cached decode steps) on 64 frames: env steps/s, and vs transformers'
   ``generate`` (7 new tokens, greedy) from the same prefix.
3. ``update_memory``: one PPO update step at the paper's minibatch (8, accumulation 20: the
   planner's steady-state step, :func:`vla_torchrl.planning.memory.run_steps`) with the shared
   and the separate critic: ``torch.cuda.max_memory_allocated`` of the update and of the
   rollout step beside ``vla-torchrl-plan``'s estimate.
4. ``overhead``: full PPO iteration (TorchRL rollout + GAE + update, tiny model on the toy env)
   over the sum of its raw parts, as ``framework_overhead.py``.

Without CUDA, :func:`main` prints one line and returns 0. The step functions take their sizes
and device as arguments (``tests/benchmarks/test_gpu_suite.py`` runs them on the CPU, small).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).resolve().parent / "results.jsonl"
GIB = 2**30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()})"


def append_record(name: str, device: torch.device, config: dict, results: dict, path=RESULTS):
    """Append ``{"benchmark": "gpu_suite/<name>", ...}`` to ``path``; returns the record."""
    entry = {
        "benchmark": f"gpu_suite/{name}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": _device_name(device),
        "versions": {"torch": torch.__version__},
        "config": config,
        "results": results,
    }
    if path is not None:
        with Path(path).open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
    print(json.dumps(entry), flush=True)
    return entry


# -- 1. simulation -------------------------------------------------------------------------------
def sim_step(
    *, num_envs: int = 64, image_hw=(480, 640), steps: int = 100, sim_backend: str = "gpu"
) -> dict[str, Any]:
    """Build ``ind``, reset, ``steps`` random steps; env steps/s and a non-blank frame check."""
    from vla_torchrl.envs import make_env
    from vla_torchrl.keys import IMAGE_KEY

    t0 = time.perf_counter()
    env = make_env("ind", num_envs=num_envs, image_size=tuple(image_hw), sim_backend=sim_backend)
    build_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        td = env.reset()
        reset_s = time.perf_counter() - t0
        frame = td.get(IMAGE_KEY)
        t0 = time.perf_counter()
        for _ in range(steps):
            td.set("action", env.action_spec.rand())
            td = env.step(td).get("next")
        step_s = time.perf_counter() - t0
        last = td.get(IMAGE_KEY)
    finally:
        env.close()
    frames = torch.stack([frame.float(), last.float()])
    return {
        "build_s": round(build_s, 3),
        "reset_s": round(reset_s, 3),
        "env_steps_per_s": round(num_envs * steps / step_s, 2),
        "frame_shape": list(last.shape),
        "non_blank": bool(frames.std() > 1.0 and frames.amax() > frames.amin()),
    }


# -- 2. rollout ----------------------------------------------------------------------------------
def rollout_step(
    *,
    model_source: str = "random",
    num_envs: int = 64,
    image_hw=(480, 640),
    device: str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    iters: int = 3,
) -> dict[str, Any]:
    """Actor call (prefill + 7 cached decode steps) vs ``generate`` on ``num_envs`` frames."""
    from vla_torchrl.modules import LoRASettings, build_policy, generate_action_tokens
    from vla_torchrl.modules.passes import prefix_inputs
    from vla_torchrl.planning.memory import PLAN_INSTRUCTIONS

    dev = torch.device(device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    bundle = build_policy(
        model_source, lora=LoRASettings(rank=32), critic="shared", device=dev, dtype=dtype
    )
    build_s = time.perf_counter() - t0
    images = torch.randint(0, 256, (num_envs, *image_hw, 3), dtype=torch.uint8)
    texts = [PLAN_INSTRUCTIONS[i % len(PLAN_INSTRUCTIONS)] for i in range(num_envs)]
    model = bundle.model

    def actor():
        from tensordict import TensorDict

        from vla_torchrl.keys import IMAGE_KEY, INSTRUCTION_KEY

        batch = TensorDict({IMAGE_KEY: images}, [num_envs])
        batch[INSTRUCTION_KEY] = texts
        bundle.actor(batch)

    with torch.no_grad():
        embeds, mask, pos = prefix_inputs(model, bundle.processor, images, texts)

        def ours():
            generate_action_tokens(model, embeds, mask, pos, mode="greedy")

        def hf():
            out = model.language_model.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=7,
                min_new_tokens=7,
                do_sample=False,
                pad_token_id=model.config.pad_token_id,
                eos_token_id=None,
            )
            if out.shape[-1] != 7:
                raise RuntimeError(f"generate returned {out.shape[-1]} tokens, expected 7")

        timings = {}
        for name, fn in (("actor", actor), ("generation", ours), ("hf_generate", hf)):
            fn()  # warm-up
            samples = []
            for _ in range(iters):
                _sync(dev)
                t0 = time.perf_counter()
                fn()
                _sync(dev)
                samples.append(time.perf_counter() - t0)
            timings[name] = statistics.median(samples)
    out = {
        "build_s": round(build_s, 2),
        "actor_s": round(timings["actor"], 4),
        "env_steps_per_s": round(num_envs / timings["actor"], 2),
        "generation_s": round(timings["generation"], 4),
        "hf_generate_s": round(timings["hf_generate"], 4),
        "speedup_vs_hf_generate": round(timings["hf_generate"] / timings["generation"], 3),
    }
    if dev.type == "cuda":
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / GIB, 2)
    return out


# -- 3. update memory ----------------------------------------------------------------------------
def update_memory_step(
    *,
    model_source: str = "random",
    critic: str = "shared",
    minibatch_size: int = 8,
    grad_accum_steps: int = 20,
    num_envs: int = 64,
    image_hw=(480, 640),
    device: str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    gradient_checkpointing: bool = False,
    overrides: dict | None = None,
    estimate: bool = True,
) -> dict[str, Any]:
    """Measured peaks of the planner's steady-state update step and rollout step, and (with
    ``estimate``) the planner's estimate of the same, in GiB."""
    from vla_torchrl.modules import LoRASettings, build_policy
    from vla_torchrl.planning.counter import LiveStorageCounter
    from vla_torchrl.planning.memory import estimate_memory, run_steps

    dev = torch.device(device)
    kwargs = {
        "lora": LoRASettings(rank=32),
        "critic": critic,
        "dtype": dtype,
        "gradient_checkpointing": gradient_checkpointing,
        "text_tokenizer": "auto",
        **({"overrides": overrides} if overrides else {}),
    }
    steps = {
        "minibatch_size": minibatch_size,
        "grad_accum_steps": grad_accum_steps,
        "num_envs": num_envs,
        "frame_hw": tuple(image_hw),
    }

    class _CudaPhases(LiveStorageCounter):
        def __init__(self):
            super().__init__()
            self.peaks: list[int] = []

        def reset_peak(self):
            super().reset_peak()
            if dev.type == "cuda":
                if self.peaks:
                    self.peaks[-1] = torch.cuda.max_memory_allocated(dev)
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                self.peaks.append(0)

    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    torch.manual_seed(0)
    bundle = build_policy(model_source, device=dev, **kwargs)
    phases = _CudaPhases()
    t0 = time.perf_counter()
    run_steps(bundle, phases, **steps)
    _sync(dev)
    out: dict[str, Any] = {"steps_s": round(time.perf_counter() - t0, 2)}
    if dev.type == "cuda":
        phases.peaks[-1] = torch.cuda.max_memory_allocated(dev)
        out["update_max_allocated_gib"] = round(phases.peaks[0] / GIB, 2)
        out["rollout_max_allocated_gib"] = round(phases.peaks[1] / GIB, 2)
    del bundle
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    if estimate:
        t0 = time.perf_counter()
        est = estimate_memory(model_source=model_source, policy_kwargs=kwargs, **steps)
        out["planner_update_gib"] = round(est.update_peak / GIB, 2)
        out["planner_rollout_gib"] = round(est.rollout_peak / GIB, 2)
        out["planner_s"] = round(time.perf_counter() - t0, 1)
        if "update_max_allocated_gib" in out:
            out["planner_update_error"] = round(
                out["planner_update_gib"] / out["update_max_allocated_gib"] - 1, 4
            )
            out["planner_rollout_error"] = round(
                out["planner_rollout_gib"] / out["rollout_max_allocated_gib"] - 1, 4
            )
    return out


# -- 4. overhead ---------------------------------------------------------------------------------
def overhead_step(
    *, device: str = "cuda", num_envs: int = 8, steps: int = 10, minibatch: int = 8, iters: int = 3
) -> dict[str, Any]:
    """Full PPO iteration / sum of raw parts (actor, env, evaluator, backward + step)."""
    from _rl_common import setup
    from framework_overhead import _timed

    from vla_torchrl.keys import ADVANTAGE_KEY
    from vla_torchrl.objectives import GAEAdvantage, VLAPPOLoss
    from vla_torchrl.objectives import functional as F

    dev = torch.device(device)
    bundle, env = setup(
        model="tiny",
        critic="shared",
        device=device,
        dtype="float32",
        num_envs=num_envs,
        steps=steps,
    )
    optim = torch.optim.AdamW(bundle.param_groups)
    parts = [0.0]
    for obj, name in (
        (bundle.actor, "forward"),
        (bundle.evaluator, "forward"),
        (env, "_step"),
        (env, "_reset"),
    ):
        _timed(obj, name, parts)
    totals, raw = [], []
    for i in range(iters + 1):
        parts[0] = 0.0
        _sync(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            rollout = env.rollout(steps, bundle.actor, break_when_any_done=False)
        rollout = GAEAdvantage(value_network=bundle.actor)(rollout)
        loss_fn = VLAPPOLoss(bundle.evaluator)
        loss_fn.advantage_stats_fn = F.frozen_advantage_stats(rollout[ADVANTAGE_KEY])
        for mb in rollout.reshape(-1).split(minibatch):
            losses = loss_fn(mb.to(dev))
            total = sum(v for k, v in losses.items() if k.startswith("loss_"))
            t = time.perf_counter()
            total.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
            _sync(dev)
            parts[0] += time.perf_counter() - t
        _sync(dev)
        if i:  # the first iteration warms up
            totals.append(time.perf_counter() - t0)
            raw.append(parts[0])
    env.close()
    return {
        "iteration_s": round(statistics.median(totals), 4),
        "raw_parts_s": round(statistics.median(raw), 4),
        "overhead_ratio": round(statistics.median(t / r for t, r in zip(totals, raw)), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help="comma-separated steps to skip")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_suite: no CUDA device on this machine; nothing was run (exit 0)")
        return 0
    dev = torch.device("cuda")
    path = None if args.no_record else RESULTS
    skip = set(filter(None, args.skip.split(",")))
    start = time.perf_counter()
    if "sim" not in skip:
        cfg = {"task": "ind", "num_envs": 64, "image_hw": [480, 640], "steps": 100}
        append_record("sim", dev, cfg, sim_step(num_envs=64, steps=100), path)
    if "rollout" not in skip:
        cfg = {"model": "random (7B layout)", "dtype": "bfloat16", "num_envs": 64}
        append_record("rollout", dev, cfg, rollout_step(num_envs=64), path)
    if "update" not in skip:
        for critic in ("shared", "separate"):
            cfg = {
                "model": "random (7B layout)",
                "critic": critic,
                "minibatch": 8,
                "accumulation": 20,
                "dtype": "bfloat16",
                "lora_rank": 32,
            }
            append_record("update_memory", dev, cfg, update_memory_step(critic=critic), path)
    if "overhead" not in skip:
        cfg = {"model": "tiny", "env": "toy", "num_envs": 8, "steps": 10, "minibatch": 8}
        append_record("overhead", dev, cfg, overhead_step(device="cuda"), path)
    print(f"gpu_suite: done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
