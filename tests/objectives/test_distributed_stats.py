"""Global advantage statistics across two gloo ranks equal those of the concatenated data."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vla_torchrl.objectives import functional as F
from vla_torchrl.objectives.global_batch import all_reduce_advantage_stats

DATA = [torch.tensor([1.0, 2.0, 7.0]), torch.tensor([-3.0, 0.5, 4.0, 10.0])]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        mean, std = all_reduce_advantage_stats(DATA[rank])
        torch.save(torch.stack([mean, std]), f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_all_reduce_stats_match_concatenation(tmp_path):
    # fork: the children inherit the imported modules (spawn would re-import torchrl, ~10 s)
    mp.start_processes(
        _worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    everything = torch.cat(DATA)
    expected = torch.stack([everything.mean(), everything.std()])
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        torch.testing.assert_close(got, expected)


def test_single_process_and_frozen_stats():
    x = torch.tensor([1.0, 2.0, 7.0, -1.0])
    m = torch.tensor([True, True, True, False])
    torch.testing.assert_close(
        torch.stack(all_reduce_advantage_stats(x, m)), torch.tensor([10 / 3, x[:3].std()])
    )
    fn = F.frozen_advantage_stats(x)
    torch.testing.assert_close(
        torch.stack(fn(torch.zeros(2), None)), torch.stack([x.mean(), x.std()])
    )
    assert all_reduce_advantage_stats(torch.tensor([5.0]))[1].item() == 1.0
