"""Throughput of the OpenVLA modules: rollout generation, evaluation pass, cached vs ``generate``.

Measures, on the same inputs (batch ``B`` of random frames and mixed-length instructions):

- ``actor``: the full rollout step (preprocess, prefill, 7 cached decode steps, decode actions);
- ``generation_cached`` / ``generation_uncached``: the 7-token generation alone from a prepared
  prefix, with the KV cache and with full recomputation per token;
- ``hf_generate``: ``LlamaForCausalLM.generate`` from the same prefix embeddings, greedy,
  exactly 7 new tokens (full-vocabulary logits, transformers' own cache and loop);
- the ``*_uniform`` pair: the same comparison when every env has the same instruction (one
  task per rollout, so no left padding);
- ``evaluator``: the teacher-forced pass (no grad) and a LoRA train step (forward + value and
  policy-gradient-style loss + backward).

Timings are medians over ``--iters`` calls; the three generation variants run interleaved (one
call of each per round) so that load from other processes hits them alike. Prints one JSON record and appends it to ``benchmarks/results.jsonl``.

Usage::

    python benchmarks/model_throughput.py --model tiny --device cpu --batch 8
    python benchmarks/model_throughput.py --model random --device cuda --dtype bfloat16 --batch 8
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from tensordict import TensorDict

from vla_torchrl.keys import EVAL_TOKEN_LOG_PROBS_KEY, IMAGE_KEY, INSTRUCTION_KEY, VALUE_KEY
from vla_torchrl.modules import LoRASettings, build_policy, generate_action_tokens
from vla_torchrl.modules.passes import prefix_inputs

INSTRUCTIONS = [
    "put the carrot on the plate",
    "pick up the spoon",
    "put the eggplant in the basket",
    "stack the green block on the yellow block",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, *, iters: int, warmup: int, device: torch.device) -> float:
    """Median seconds per call (the median resists other processes' load on shared cores)."""
    return _time_interleaved({"f": fn}, iters=iters, warmup=warmup, device=device)["f"]


def _time_interleaved(
    fns: dict[str, object], *, iters: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each function, calls alternating so load drift hits all."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "random"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224, help="raw frame size")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--no-record", action="store_true", help="do not append to results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    bundle = build_policy(
        args.model,
        lora=LoRASettings(rank=32),
        critic="shared",
        text_tokenizer="auto",
        device=device,
        dtype=dtype,
    )
    model = bundle.model
    frames = torch.randint(0, 256, (args.batch, args.image_size, args.image_size, 3))
    td = TensorDict({IMAGE_KEY: frames.to(torch.uint8)}, [args.batch])
    td[INSTRUCTION_KEY] = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(args.batch)]
    timing = {"iters": args.iters, "warmup": args.warmup}
    results: dict[str, float] = {}

    with torch.no_grad():
        t = _time(lambda: bundle.actor(td.clone()), **timing, device=device)
        results["actor_step_s"] = t
        results["actor_samples_per_s"] = args.batch / t
        images = td[IMAGE_KEY]
        texts = list(td[INSTRUCTION_KEY])
        embeds, mask, pos = prefix_inputs(model, bundle.processor, images, texts)
        # same instruction for every env (one task per rollout): no left padding
        u_embeds, u_mask, u_pos = prefix_inputs(
            model, bundle.processor, images, [INSTRUCTIONS[0]] * args.batch
        )
        lm = model.language_model

        def hf_generate(embeds=embeds, mask=mask):
            return lm.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                max_new_tokens=7,
                min_new_tokens=7,
                do_sample=False,
                pad_token_id=model.config.pad_token_id,
                eos_token_id=None,
            )

        out = hf_generate()
        if out.shape[-1] != 7:
            raise RuntimeError(f"generate returned {out.shape[-1]} tokens, expected 7")
        timed = _time_interleaved(
            {
                "generation_cached": lambda: generate_action_tokens(
                    model, embeds, mask, pos, mode="greedy", use_cache=True
                ),
                "generation_uncached": lambda: generate_action_tokens(
                    model, embeds, mask, pos, mode="greedy", use_cache=False
                ),
                "hf_generate": hf_generate,
                "generation_cached_uniform": lambda: generate_action_tokens(
                    model, u_embeds, u_mask, u_pos, mode="greedy", use_cache=True
                ),
                "hf_generate_uniform": lambda: hf_generate(u_embeds, u_mask),
            },
            **timing,
            device=device,
        )
        results.update({f"{name}_s": t for name, t in timed.items()})
        results["speedup_cached_vs_hf_generate"] = (
            results["hf_generate_s"] / results["generation_cached_s"]
        )
        results["speedup_cached_vs_hf_generate_uniform"] = (
            results["hf_generate_uniform_s"] / results["generation_cached_uniform_s"]
        )
        results["speedup_cached_vs_uncached"] = (
            results["generation_uncached_s"] / results["generation_cached_s"]
        )
        rollout = bundle.actor(td.clone())
        t = _time(lambda: bundle.evaluator(rollout.clone()), **timing, device=device)
        results["evaluator_no_grad_s"] = t
        results["evaluator_no_grad_samples_per_s"] = args.batch / t

    params = [p for g in bundle.param_groups for p in g["params"]]
    optim = torch.optim.AdamW(bundle.param_groups)
    bundle.evaluator.train()

    def train_step():
        out = bundle.evaluator(rollout.clone())
        loss = -out[EVAL_TOKEN_LOG_PROBS_KEY].sum(-1).mean() + out[VALUE_KEY].pow(2).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optim.step()

    t = _time(train_step, **timing, device=device)
    results["train_step_s"] = t
    results["train_samples_per_s"] = args.batch / t

    record = {
        "benchmark": "model_throughput",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "peft": __import__("peft").__version__,
            "timm": __import__("timm").__version__,
        },
        "config": {
            "model": args.model,
            "dtype": args.dtype,
            "batch": args.batch,
            "frame_size": args.image_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "lora_rank": 32,
            "tokenizer": type(bundle.processor.prompt_tokenizer.text_tokenizer).__name__,
        },
        "results": {k: round(v, 6) for k, v in results.items()},
    }
    if device.type == "cuda":
        record["results"]["max_memory_gb"] = round(
            torch.cuda.max_memory_allocated(device) / 2**30, 3
        )
    print(json.dumps(record, indent=2))
    if not args.no_record:
        path = Path(__file__).resolve().parent / "results.jsonl"
        with path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
