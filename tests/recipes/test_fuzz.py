"""Fuzz-style checks: random malformed configs and checkpoints end in a readable error, never in
another exception type, a traceback or a hang.

Every case either loads, or raises the project's :class:`UserError` (``ConfigError``,
``CheckpointError``) with a message that names something; anything else (``TypeError``,
``KeyError``, ``SafetensorError``, ``UnpicklingError``...) is a bug the user would see as a
traceback. Fixed seeds, a few hundred cases, each under a timeout.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import shutil
import signal
import string
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vla_torchrl.config.load import compose_config, to_train_config
from vla_torchrl.config.train_schema import TrainConfig, validate
from vla_torchrl.errors import UserError
from vla_torchrl.recipes._cli import _config_error_types, format_user_error
from vla_torchrl.training.checkpointing import CheckpointError, CheckpointManager, check_tensors

CASE_TIMEOUT_S = 5.0


@contextlib.contextmanager
def _deadline(seconds: float, what: str):
    """Fail (instead of hanging) when the body runs longer than ``seconds``."""

    def _alarm(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _random_value(rng: random.Random):
    choice = rng.randrange(14)
    if choice == 0:
        return "".join(rng.choices(string.printable, k=rng.randint(0, 12)))
    if choice == 1:
        return rng.choice([-1, 0, 1, -(10**12), 10**18, 7])
    if choice == 2:
        return rng.choice([-1.5, 0.0, 1e-300, -1e-4, 1e308, math.nan, math.inf, -math.inf])
    if choice == 3:
        return rng.choice([True, False])
    if choice == 4:
        return None
    if choice == 5:
        return [rng.choice([1, "a", None, 2.5, [1]]) for _ in range(rng.randint(0, 3))]
    if choice == 6:
        return {rng.choice(["a", "lr", "name", ""]): rng.choice([1, "x", None])}
    if choice == 7:
        return rng.choice(["ppo", "grpo", "tpo", "sft", "cuda", "cuda:3", "toy", "none", "initial"])
    if choice == 8:
        return rng.choice(["shared_h0", "separate", "process", "whole", "lora", "full", "float32"])
    if choice == 9:
        return rng.choice([[0.9, 0.999], [1.0, 0.5], [0.9], [512, 128], [0, 1], []])
    if choice == 10:
        return rng.choice(["1e-4", "0.2", "nan", "inf", "-1"])
    if choice == 11:
        return rng.choice([0.2, 1.0, 0.99, 32, 64, 4, 16])
    if choice == 12:
        return "\x00\n\t" + "é" * rng.randint(0, 3)
    return {"nested": {"deeper": rng.random()}}


def _leaves(data: dict, prefix=()):
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "options":
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _mutate(base: dict, rng: random.Random) -> dict:
    data = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        leaves = list(_leaves(data))
        if kind <= 2 and leaves:  # wrong type / out of range / random string on a known key
            path = rng.choice(leaves)
            node = data
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = _random_value(rng)
        elif kind == 3:  # unknown key, at the top or inside a group
            groups = [k for k, v in data.items() if isinstance(v, dict)]
            node = data[rng.choice(groups)] if groups and rng.random() < 0.7 else data
            node["".join(rng.choices(string.ascii_lowercase + "_", k=rng.randint(1, 10)))] = (
                _random_value(rng)
            )
        elif kind == 4:  # a missing group, or a group replaced by a scalar / list
            groups = [k for k, v in data.items() if isinstance(v, dict)]
            if groups:
                group = rng.choice(groups)
                if rng.random() < 0.5:
                    del data[group]
                else:
                    data[group] = _random_value(rng)
        else:  # a known key removed (takes the default)
            if leaves:
                path = rng.choice(leaves)
                node = data
                for key in path[:-1]:
                    node = node[key]
                node.pop(path[-1], None)
    return data


def _base_config() -> dict:
    cfg = compose_config(
        [
            "env.num_envs=4",
            "collector.steps_per_env=8",
            "optim.minibatch_size=8",
            "optim.grad_accum_steps=2",
        ],
        config_name="train_cpu",
    )
    return dataclasses.asdict(cfg)


def test_random_malformed_configs_raise_config_errors_only():
    rng = random.Random(8)
    base = _base_config()
    validate(to_train_config(base), tasks=["ind"], cuda_available=False)  # the base is valid
    outcomes = {"ok": 0, "refused": 0}
    for case in range(400):
        data = _mutate(base, rng)
        try:
            with _deadline(CASE_TIMEOUT_S, f"config case {case}"):
                cfg = to_train_config(data)
                validate(cfg, tasks=["ind"], cuda_available=False)
        except UserError as err:
            line = format_user_error(err)
            assert len(line) > len("error: ") + 10 and "\n" not in line, (case, line)
            outcomes["refused"] += 1
            continue
        except Exception as err:  # noqa: BLE001 - any other type is the bug this test looks for
            pytest.fail(f"case {case}: {type(err).__name__}: {err}\nconfig: {data!r}")
        assert isinstance(cfg, TrainConfig)
        outcomes["ok"] += 1
    # the fuzzer exercises both paths (it is not refusing everything for one silly reason)
    assert outcomes["refused"] > 200 and outcomes["ok"] > 10, outcomes


_OVERRIDE_KEYS = [
    "optim.lr",
    "algo.clip_epsilon",
    "model.temperature",
    "model.lora_rank",
    "env.num_envs",
    "algo",
    "env",
    "model",
    "device",
    "seed",
    "algo.critic",
    "nonexistent.key",
    "+algo.extra",
    "~optim",
    "collector.total_env_steps",
    "optim.betas",
]
_OVERRIDE_VALUES = [
    "-1",
    "0",
    "abc",
    "null",
    "[1,2",
    "{a: 1}",
    "1e400",
    "nan",
    "true",
    "ppo",
    "dqn",
    "'quoted'",
    "${oops}",
    "",
    "[0.9, 1.5]",
]


def test_random_command_line_overrides_raise_only_reported_errors():
    """Through Hydra's composition (the CLI path): Hydra/OmegaConf errors count as reported,
    since ``run_cli`` prints those in one line too."""
    rng = random.Random(80)
    reported = _config_error_types()
    for case in range(60):
        overrides = [
            f"{rng.choice(_OVERRIDE_KEYS)}={rng.choice(_OVERRIDE_VALUES)}"
            for _ in range(rng.randint(1, 3))
        ]
        try:
            with _deadline(CASE_TIMEOUT_S, f"override case {case}"):
                cfg = compose_config(overrides, config_name="train_cpu")
                validate(cfg, tasks=["ind"], cuda_available=False)
        except reported as err:
            assert str(err).strip(), (case, overrides)
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"overrides {overrides}: {type(err).__name__}: {err}")


# ---------------------------------------------------------------------------- checkpoints

_FILES = ["tensors.safetensors", "optimizer.pt", "rng.pt", "counters.json", "manifest.json"]


def _template() -> dict[str, torch.Tensor]:
    return {"lora.A": torch.zeros(4, 3), "lora.B": torch.zeros(3, 4), "head.b": torch.zeros(1)}


def _good_checkpoint(root: Path) -> Path:
    params = [torch.nn.Parameter(t.clone()) for t in _template().values()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    sum((p**2).sum() for p in params).backward()
    opt.step()
    manager = CheckpointManager(root)
    return manager.save(
        16,
        tensors={k: torch.randn_like(v) for k, v in _template().items()},
        optimizer_states={"optimizer": opt.state_dict()},
        counters={"env_steps": 16, "iteration": 1},
        extra_files={"config.json": b"{}"},
    )


def _manifest(path: Path) -> dict | None:
    """The manifest as written by an earlier damage, or None when it is no longer an object."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    return manifest


def _rewrite_manifest(path: Path) -> None:
    """Make the manifest agree with whatever is on disk (so checksums pass on garbage)."""
    import hashlib

    manifest = _manifest(path)
    if manifest is None:
        return
    files = {}
    for rel in manifest["files"]:
        file = path / rel
        if file.is_file():
            data = file.read_bytes()
            files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest["files"] = files
    (path / "manifest.json").write_text(json.dumps(manifest))


def _damage(path: Path, rng: random.Random) -> str:
    """Apply one random damage to the checkpoint directory ``path``; return its description."""
    name = rng.choice(_FILES)
    file = path / name
    kind = rng.randrange(11)
    if kind == 0:
        file.unlink(missing_ok=True)
        return f"deleted {name}"
    if not file.is_file():
        return "nothing"
    data = bytearray(file.read_bytes())
    if kind == 1:
        file.write_bytes(bytes(data[: rng.randrange(max(1, len(data)))]))
        return f"truncated {name}"
    if kind == 2:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data)) if data else 0
            if data:
                data[i] ^= 1 << rng.randrange(8)
        file.write_bytes(bytes(data))
        return f"flipped bits in {name}"
    if kind == 3:
        file.write_bytes(rng.randbytes(rng.randint(0, 300)))
        return f"random bytes in {name}"
    if kind == 4:  # garbage that the manifest vouches for
        file.write_bytes(rng.randbytes(rng.randint(0, 300)))
        if name != "manifest.json":
            _rewrite_manifest(path)
        return f"random bytes in {name}, manifest rewritten"
    if kind == 5:  # a pickle where safetensors is expected, checksums rewritten
        torch.save({"lora.A": torch.zeros(4, 3)}, path / "tensors.safetensors")
        _rewrite_manifest(path)
        return "pickle in tensors.safetensors"
    if kind == 6:  # wrong shapes / names, consistently checksummed
        tensors = {k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in _template().items()}
        if rng.random() < 0.5:
            tensors = {"other": torch.zeros(2)}
        save_file(tensors, str(path / "tensors.safetensors"))
        _rewrite_manifest(path)
        return "wrong tensor shapes"
    if kind == 7:  # a manifest with wrong types or values
        manifest = _manifest(path)
        if manifest is None:
            return "nothing"
        field, value = rng.choice(
            [
                ("files", []),
                ("files", "x"),
                ("files", {"../../etc/passwd": {"sha256": "0", "size": 1}}),
                ("files", {"tensors.safetensors": {"size": "big"}}),
                ("files", {"tensors.safetensors": None}),
                ("files", {"/abs": {"sha256": "0", "size": 0}}),
                ("step", "twelve"),
                ("step", None),
                ("format", 99),
                ("format", None),
            ]
        )
        manifest[field] = value
        (path / "manifest.json").write_text(json.dumps(manifest))
        return f"manifest {field}={value!r}"
    if kind == 8:  # JSON of the wrong shape
        (path / "manifest.json").write_text(rng.choice(["[]", "null", "1", '"s"', "[" * 5000]))
        return "manifest not an object"
    if kind == 9:  # other payloads of the wrong kind, checksummed
        target = rng.choice(["counters.json", "optimizer.pt", "rng.pt"])
        if target == "counters.json":
            (path / target).write_text(rng.choice(["[1, 2]", "3", "null", '{"env_steps": "x"}']))
        else:
            torch.save(rng.choice([[1, 2], torch.zeros(3), {"python": 1}, {}]), path / target)
        _rewrite_manifest(path)
        return f"wrong payload in {target}"
    # a directory where a file should be
    file.unlink()
    file.mkdir()
    return f"{name} replaced by a directory"


def test_random_damaged_checkpoints_load_or_raise_checkpoint_errors(tmp_path):
    rng = random.Random(88)
    good = _good_checkpoint(tmp_path / "good")
    refused = loaded = 0
    for case in range(150):
        run = tmp_path / f"case{case}"
        path = run / "checkpoints" / good.name
        shutil.copytree(good, path)
        damage = [_damage(path, rng) for _ in range(rng.randint(1, 2))]
        manager = CheckpointManager(run)
        try:
            with _deadline(CASE_TIMEOUT_S, f"checkpoint case {case}"):
                # discovery never raises, and never offers a checkpoint that fails to verify
                latest = manager.latest()
                if latest is not None:
                    manager.verify(latest)
                ckpt = manager.load(path)
                check_tensors(ckpt.tensors, _template(), where=str(path))
        except CheckpointError as err:
            assert str(path) in str(err) or "manifest" in str(err), (damage, str(err))
            refused += 1
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"damage {damage}: {type(err).__name__}: {err}")
        else:
            loaded += 1
        finally:
            shutil.rmtree(run, ignore_errors=True)
    assert refused > 100, (refused, loaded)
