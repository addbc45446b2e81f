"""Demonstration storage: instructions round-trip, and loading never unpickles (issue 17 item 1)."""

from __future__ import annotations

import contextlib
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from tensordict import NonTensorData, NonTensorStack, TensorDict

from vla_torchrl.envs.demos import UnsafeDemosError, load_demos, save_demos
from vla_torchrl.keys import ACTION_KEY, EPISODE_ID_KEY, INSTRUCTION_KEY

INSTRUCTIONS = ["put carrot on plate", "put carrot on plate", "put eggplant on plate"]


def _demo_set(path: Path) -> Path:
    """A small set shaped like ``vla-torchrl-collect``'s: tensors + a stack of strings."""
    td = TensorDict(
        {ACTION_KEY: torch.arange(21.0).reshape(3, 7), EPISODE_ID_KEY: torch.tensor([0, 0, 1])},
        batch_size=[3],
    )
    td.set(INSTRUCTION_KEY, NonTensorStack(*[NonTensorData(s) for s in INSTRUCTIONS]))
    return save_demos(td, path)


class _Payload:
    """Unpickling this writes ``marker`` (stands for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _plant_stack_pickle(demos: Path, marker: Path) -> Path:
    """The instruction stack's meta.json points at a ``pickle.pkl`` (tensordict's own format)."""
    folder = demos / INSTRUCTION_KEY
    meta = json.loads((folder / "meta.json").read_text())
    meta["data"] = "pickle.pkl"
    (folder / "meta.json").write_text(json.dumps(meta))
    payload = folder / "pickle.pkl"
    payload.write_bytes(pickle.dumps(_Payload(marker)))
    return payload


def _plant_non_tensor_pickle(demos: Path, marker: Path) -> Path:
    """An extra NonTensorData field whose non-tensor attributes sit in ``other.pickle``."""
    folder = demos / "extra"
    folder.mkdir()
    meta = {"_type": "<class 'tensordict.tensorclass.NonTensorData'>"}
    (folder / "meta.json").write_text(json.dumps(meta))
    payload = folder / "other.pickle"
    payload.write_bytes(pickle.dumps(_Payload(marker)))
    top = json.loads((demos / "meta.json").read_text())
    top["extra"] = {"type": "NonTensorData"}
    (demos / "meta.json").write_text(json.dumps(top))
    return payload


def test_collect_shaped_set_round_trips_without_pickle(tmp_path):
    demos = _demo_set(tmp_path / "demos")
    assert not [p for p in demos.rglob("*") if p.suffix in (".pickle", ".pkl")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tensordict warns when it unpickles
        back = load_demos(demos)
    assert back.get(INSTRUCTION_KEY).tolist() == INSTRUCTIONS
    assert back.get(ACTION_KEY)[2, 6].item() == 20.0
    assert back.get(EPISODE_ID_KEY).tolist() == [0, 0, 1]


@pytest.mark.parametrize("plant", [_plant_stack_pickle, _plant_non_tensor_pickle])
def test_pickled_payload_never_runs(tmp_path, plant):
    demos = _demo_set(tmp_path / "demos")
    marker = tmp_path / "payload-ran"
    payload = plant(demos, marker)
    with pytest.raises(UnsafeDemosError) as info:
        load_demos(demos)
    assert not marker.exists()
    message = str(info.value)
    assert "\n" not in message and str(payload) in message
    # the payload is live: a loader that unpickles runs it
    # (the payload's return value is no valid field, so that load then fails: ignored)
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        TensorDict.load_memmap(demos, allow_pickle=True)
    assert marker.exists()


def test_pickle_refused_even_when_not_found_by_name(tmp_path, monkeypatch):
    # the name scan is the first guard; tensordict's allow_pickle=False is the second
    demos = _demo_set(tmp_path / "demos")
    marker = tmp_path / "payload-ran"
    _plant_stack_pickle(demos, marker)
    monkeypatch.setattr("vla_torchrl.envs.demos._PICKLE_SUFFIXES", ())
    with pytest.raises(UnsafeDemosError, match=str(demos)):
        load_demos(demos)
    assert not marker.exists()


def test_not_a_demos_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        load_demos(tmp_path)
