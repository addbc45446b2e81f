from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from vla_torchrl.utils import seed_everything, select_device, setup_logging


def test_select_device_cpu_and_auto():
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_select_device_cuda_without_gpu_names_the_fix():
    with pytest.raises(ValueError, match="no CUDA device.*device=cpu"):
        select_device("cuda")


@pytest.mark.parametrize("bad", ["tpu-ish", "mps"])
def test_select_device_rejects_unknown(bad):
    with pytest.raises(ValueError, match=repr(bad)):
        select_device(bad)


def test_seed_everything_reproduces_all_generators():
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_setup_logging_is_idempotent():
    a = setup_logging("DEBUG")
    b = setup_logging("INFO")
    assert a is b and b.level == logging.INFO
    assert sum(getattr(h, "_vla_torchrl", False) for h in b.handlers) == 1
