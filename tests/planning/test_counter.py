"""The live-storage counter against hand-counted byte sizes."""

from __future__ import annotations

import torch

from vla_torchrl.planning.counter import LiveStorageCounter


def test_counts_new_storages_once_and_frees_them():
    with LiveStorageCounter(round_to=1) as counter:
        a = torch.empty(250)  # 1000 B
        v = a.view(5, 50)  # a view: same storage
        a.add_(1.0)  # in place: same storage
        b = a * 2  # + 1000 B
        assert counter.live_bytes == 2000
        del a
        assert counter.live_bytes == 2000  # the view keeps a's storage alive
        del v
        assert counter.live_bytes == 1000  # b only
    assert counter.peak_bytes == 2000
    del b


def test_rounds_to_the_allocator_granularity():
    with LiveStorageCounter(round_to=512) as counter:
        _x = torch.empty(3)  # 12 B -> 512 B
        _y = torch.empty(129)  # 516 B -> 1024 B
    assert counter.live_bytes == 1536


def test_peak_breakdown_by_category():
    w = torch.ones(100)  # 400 B, made outside the mode
    with LiveStorageCounter(round_to=1) as counter:
        counter.track(w)
        counter.reset_peak()
        h = w * 3  # 400 B, kept
        tmp = h.exp()  # 400 B temporary, freed before the end
        del tmp
        g = h + 1  # 400 B, made after the peak's temporary was freed
    parts = counter.peak_by_category({"weights": [w], "kept": [h]})
    assert counter.peak_bytes == 1200
    assert parts == {"weights": 400, "kept": 400, "other": 400}  # the temporary, not g
    del g
