"""The real modules run on fake tensors (no data): build, rollout, evaluator, update."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from vla_torchrl.keys import ACTION_TOKENS_KEY, EVAL_TOKEN_LOG_PROBS_KEY, VALUE_KEY
from vla_torchrl.modules import LoRASettings, OpenVLAEvaluator
from vla_torchrl.modules.vision import ScaleFactorLayerScale
from vla_torchrl.planning.memory import fake_policy, synthetic_batch
from vla_torchrl.training.update import run_update

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _bundle(mode, critic="shared"):
    return fake_policy(
        mode, "tiny", lora=LoRASettings(rank=2), critic=critic, text_tokenizer="builtin"
    )


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_actor_and_evaluator_run_on_fake_tensors(critic):
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    bundle = _bundle(mode, critic)
    with warnings.catch_warnings(), mode:
        warnings.simplefilter("ignore")
        td = synthetic_batch(bundle.model.config, 3, frame_hw=(32, 32), with_training_keys=False)
        with torch.no_grad():
            bundle.actor(td)  # the padding check reads no values on fake tensors
        assert isinstance(td[ACTION_TOKENS_KEY], FakeTensor)
        bundle.evaluator(td)  # the token range check is skipped on fake tensors
        assert td[EVAL_TOKEN_LOG_PROBS_KEY].shape == (3, 7)
        assert td[VALUE_KEY].shape == (3, 1)


def test_token_range_check_still_applies_to_real_tensors():
    from tests.modules.conftest import make_tiny_model
    from vla_torchrl.modules.processors import OpenVLAProcessor

    model = make_tiny_model()
    processor = OpenVLAProcessor.from_config(model.config, text_tokenizer="builtin")
    td = synthetic_batch(model.config, 1, frame_hw=(32, 32))
    td.set(ACTION_TOKENS_KEY, torch.full((1, 7), 5))
    with pytest.raises(ValueError, match="action tokens must lie in"):
        OpenVLAEvaluator(model, processor)(td)


def test_run_update_runs_on_fake_tensors():
    with FakeTensorMode(allow_non_fake_inputs=True):
        w = torch.nn.Parameter(torch.zeros(3))
        batch = TensorDict({"x": torch.ones(8, 3)}, [8])

        def loss_fn(td):
            return TensorDict({"loss_l2": ((w - td["x"]) ** 2).mean()}, [])

        stats = run_update(
            batch,
            loss_fn,
            torch.optim.AdamW([w], lr=0.1),
            [w],
            minibatch_size=4,
            grad_accum_steps=2,
            max_grad_norm=10.0,
        )
    assert stats["steps"] == 1 and stats["skipped"] == 0
    assert "grad_norm" not in stats  # the norm of fake gradients has no value


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_layer_scale_swap_works_without_data(device):
    if device == "meta":
        gamma = torch.full((4,), 0.5, device="meta")
        layer = ScaleFactorLayerScale.from_gamma(gamma)
        assert layer.scale_factor.is_meta
    else:
        with FakeTensorMode():
            layer = ScaleFactorLayerScale.from_gamma(torch.full((4,), 0.5))
            assert isinstance(layer.scale_factor, FakeTensor)
    real = ScaleFactorLayerScale.from_gamma(torch.tensor([0.5, 2.0]))
    assert real(torch.ones(2)).tolist() == [0.5, 2.0]
