"""Load and save OpenVLA checkpoints in the Hugging Face directory layout (safetensors only).

A checkpoint directory holds ``config.json`` (with ``norm_stats``) and either one
``model.safetensors`` or shards ``model-0000k-of-0000n.safetensors`` listed in
``model.safetensors.index.json`` (the ``openvla/openvla-7b`` release has 3 bf16 shards). Loading
builds the model on the meta device and streams each shard into it (``assign=True``), so the 7B
model never exists twice in memory. Loading is strict: missing, unexpected or mis-shaped
tensors, missing shard files and truncated shards raise errors that say what to fix. No remote
code and no pickle are involved.

Examples:
    >>> import tempfile, torch
    >>> from vla_torchrl.modules.config import OpenVLAConfig
    >>> from vla_torchrl.modules.openvla import OpenVLA
    >>> model = OpenVLA(OpenVLAConfig.tiny())
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_openvla(model, d, max_shard_size="4MB")
    ...     again = load_openvla(d)
    ...     shards = sorted(p.name for p in __import__("pathlib").Path(d).glob("*.safetensors"))
    >>> len(shards) > 1, torch.equal(again.projector.fc1.weight, model.projector.fc1.weight)
    (True, True)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from vla_torchrl.errors import CheckpointError
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.openvla import OpenVLA

__all__ = ["CheckpointError", "load_openvla", "parse_size", "save_openvla"]

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def parse_size(size: int | str) -> int:
    """``"5GB"`` -> 5_000_000_000 (KB/MB/GB decimal, KiB/MiB/GiB binary), ints unchanged.

    Examples:
        >>> parse_size("2MB"), parse_size("1KiB"), parse_size(10)
        (2000000, 1024, 10)
    """
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", size)
    if match is None or match.group(2).upper() not in _UNITS:
        raise ValueError(f"max_shard_size={size!r} is not a size like '5GB', '500MB' or 10**9.")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def save_openvla(
    model: OpenVLA, path: str | os.PathLike[str], *, max_shard_size: int | str = "5GB"
) -> None:
    """Write ``config.json``, safetensors shards and (when sharded) the index file."""
    state = model.state_dict()
    adapted = [k for k in state if "lora_" in k or ".base_layer." in k]
    if adapted:
        raise CheckpointError(
            f"save_openvla: the model carries LoRA adapters ({adapted[0]!r}, ...); save them with "
            "vla_torchrl.modules.lora.save_adapters, or merge them first (merge_and_unload())."
        )
    limit = parse_size(max_shard_size)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = tensor.detach().to("cpu").contiguous()
        size += nbytes
    with (out / "config.json").open("w") as fh:
        json.dump(model.config.to_hf_dict(), fh, indent=2)
    if len(shards) == 1:
        save_file(shards[0], str(out / SINGLE_FILE), metadata={"format": "pt"})
        return
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        for key, tensor in shard.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
    with (out / INDEX_FILE).open("w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2)


def _weight_map(root: Path) -> dict[str, str]:
    index = root / INDEX_FILE
    if index.is_file():
        with index.open() as fh:
            data = json.load(fh)
        if "weight_map" not in data:
            raise CheckpointError(f"{index} has no 'weight_map'; the index file is corrupt.")
        return dict(data["weight_map"])
    single = root / SINGLE_FILE
    if single.is_file():
        with _open_shard(single) as f:
            return dict.fromkeys(f.keys(), SINGLE_FILE)
    found = sorted(p.name for p in root.iterdir())
    raise CheckpointError(
        f"No safetensors weights in {root} (expected {INDEX_FILE} or {SINGLE_FILE}; found "
        f"{found[:10]}). Only safetensors checkpoints load (no pickle); convert .bin files first."
    )


def _open_shard(file: Path):
    try:
        return safe_open(str(file), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own error type for bad headers/sizes
        raise CheckpointError(
            f"Cannot read shard {file} ({exc}); the file is truncated or corrupt (an interrupted "
            "download?). Download it again."
        ) from exc


def load_openvla(
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> OpenVLA:
    """Build an :class:`OpenVLA` from a checkpoint directory, strictly, streaming the shards.

    Args:
        path: the checkpoint directory.
        dtype: cast floating tensors to this dtype (``None``: keep the stored dtype).
        device: where the weights go.

    Raises:
        FileNotFoundError: no directory / no ``config.json``.
        CheckpointError: missing / unexpected / mis-shaped tensors, missing or truncated shards.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"OpenVLA checkpoint directory {root} does not exist.")
    config = OpenVLAConfig.from_json(root)
    with torch.device("meta"):
        model = OpenVLA(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    weight_map = _weight_map(root)
    missing = sorted(set(expected) - set(weight_map))
    unexpected = sorted(set(weight_map) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"Checkpoint {root} does not match OpenVLAConfig from its config.json: "
            f"{len(missing)} missing tensors {missing[:5]}, {len(unexpected)} unexpected "
            f"{unexpected[:5]}. Is this an OpenVLA (prismatic dinosiglip + Llama-2) checkpoint?"
        )
    files = sorted(set(weight_map.values()))
    absent = [f for f in files if not (root / f).is_file()]
    if absent:
        raise CheckpointError(
            f"Checkpoint {root} is partial: shard files {absent} listed in {INDEX_FILE} are "
            "missing. Download the complete checkpoint."
        )
    device = torch.device(device)
    for file in files:
        chunk: dict[str, torch.Tensor] = {}
        with _open_shard(root / file) as f:
            keys = set(f.keys())
            listed = {k for k, v in weight_map.items() if v == file}
            if keys != listed:
                raise CheckpointError(
                    f"Shard {root / file} holds {sorted(keys ^ listed)[:5]} differently from "
                    f"{INDEX_FILE}; the index and the shard disagree (re-download both)."
                )
            for key in sorted(keys):
                try:
                    tensor = f.get_tensor(key)
                except Exception as exc:
                    raise CheckpointError(
                        f"Cannot read {key!r} from {root / file} ({exc}); the shard is truncated "
                        "or corrupt. Download it again."
                    ) from exc
                if tuple(tensor.shape) != expected[key]:
                    raise CheckpointError(
                        f"{key}: checkpoint shape {tuple(tensor.shape)} != model shape "
                        f"{expected[key]} (from config.json); the config and the weights disagree."
                    )
                if dtype is not None and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                chunk[key] = tensor.to(device)
        model.load_state_dict(chunk, strict=False, assign=True)
    # non-persistent buffers (rotary frequencies) are not stored: rebuild them on `device`
    lm = model.language_model.model
    with torch.device(device):
        lm.rotary_emb = LlamaRotaryEmbedding(config=lm.config)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"Tensors left unloaded after reading {root}: {left[:5]}.")
    return model.eval()
