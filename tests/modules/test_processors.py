"""Processing steps against hand formulas, NumPy and PIL references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchrl.data.vla import VocabTailActionTokenizer

from vla_torchrl.assets import AssetPaths
from vla_torchrl.modules.processors import (
    ActionTokenizer,
    BuiltinTokenizer,
    OpenVLAImageProcessor,
    PromptTokenizer,
    SentencePieceTokenizer,
    build_prompt,
)

BINS = np.linspace(-1, 1, 256)
CENTERS = (BINS[:-1] + BINS[1:]) / 2


def _numpy_encode(a: np.ndarray) -> np.ndarray:
    return 32000 - np.digitize(np.clip(a, -1, 1), BINS)


def test_action_codec_matches_openvla_formulas_and_torchrl_off_the_edges():
    gen = torch.Generator().manual_seed(0)
    inside = torch.rand(5000, generator=gen, dtype=torch.float64) * 2.4 - 1.2
    actions = torch.cat([inside, torch.tensor(BINS)])  # the exact float64 edges too
    ours = ActionTokenizer()
    np.testing.assert_array_equal(ours.encode(actions).numpy(), _numpy_encode(actions.numpy()))
    all_ids = torch.arange(31700, 32064)  # includes ids outside the action range (clipped)
    expected = CENTERS[np.clip(32000 - all_ids.numpy() - 1, 0, 254)]
    np.testing.assert_allclose(ours.decode(all_ids).numpy(), expected, atol=1e-7)
    # torchrl's codec: same ids off the edges (its float32 edges differ on some), same centers
    codec = VocabTailActionTokenizer(256, full_vocab_size=32000)
    assert torch.equal(codec.encode(inside.float()), ours.encode(inside.float()))
    torch.testing.assert_close(codec.decode(all_ids), ours.decode(all_ids))


def test_action_round_trip_and_extremes():
    tok = ActionTokenizer()
    assert tok.encode(torch.tensor([-1.0, 1.0])).tolist() == [31999, 31744]
    a = torch.linspace(-1, 1, 10001)
    err = (tok.decode(tok.encode(a)) - a).abs().max().item()
    assert err <= (1 / 255) + 1e-6  # half a bin width (bins are 2/255 apart)
    ids = tok.encode(torch.rand(1000) * 2 - 1)
    assert ids.min() >= 31744 and ids.max() <= 31999


def test_normalize_and_unnormalize_follow_facts():
    q01 = np.array([-0.02, -0.1, 0.0, -0.3, -0.2, -0.5, 0.0])
    q99 = np.array([0.04, 0.1, 0.2, 0.3, 0.2, 0.5, 1.0])
    mask = np.array([True] * 6 + [False])
    tok = ActionTokenizer(q01=q01, q99=q99, mask=mask)
    ids = torch.randint(31744, 32000, (20, 7))
    normalized = CENTERS[np.clip(32000 - ids.numpy() - 1, 0, 254)]
    expected = np.where(mask, 0.5 * (normalized + 1) * (q99 - q01) + q01, normalized)
    np.testing.assert_allclose(tok.tokens_to_actions(ids).numpy(), expected, atol=1e-6)
    env = torch.tensor(np.random.default_rng(0).uniform(-0.6, 0.6, (20, 7)), dtype=torch.float32)
    scaled = np.clip(2 * (env.numpy() - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)
    expected_n = np.where(mask, scaled, env.numpy())
    np.testing.assert_allclose(tok.normalize(env).numpy(), expected_n, atol=1e-5)
    # torchrl's statistics path differs (adds 1e-8 to q99 - q01): ours follows FACTS exactly
    ref = VocabTailActionTokenizer(
        256, full_vocab_size=32000, norm_low=q01, norm_high=q99, norm_mask=mask
    )
    assert torch.allclose(ref.decode(ids), tok.tokens_to_actions(ids), atol=1e-6)


def test_from_norm_stats_requires_key_when_ambiguous():
    stats = {k: {"action": {"q01": [0.0], "q99": [1.0]}} for k in ("a", "b")}
    with pytest.raises(ValueError, match="unnorm_key"):
        ActionTokenizer.from_norm_stats(stats)
    with pytest.raises(KeyError, match="not in norm_stats"):
        ActionTokenizer.from_norm_stats(stats, "c")
    tok = ActionTokenizer.from_norm_stats(stats, "b")
    assert tok.unnormalize(torch.tensor([1.0])).item() == 1.0


def test_image_processor_matches_pil_bicubic_and_normalisation():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    px = OpenVLAImageProcessor(image_size=28)(torch.from_numpy(frame)[None])
    assert px.shape == (1, 6, 28, 28)
    pil = np.asarray(Image.fromarray(frame).resize((28, 28), Image.BICUBIC), dtype=np.float64)
    pil = pil.transpose(2, 0, 1) / 255.0
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    dino = px[0, :3].double().numpy() * std + mean
    siglip = px[0, 3:].double().numpy() * 0.5 + 0.5
    np.testing.assert_allclose(dino, siglip, atol=1e-6)  # same resized image in both halves
    assert np.abs(dino - pil).max() <= 3 / 255  # PIL's bicubic, up to rounding of its kernel


def test_prompt_and_left_padding_with_builtin_tokenizer():
    tok = PromptTokenizer(BuiltinTokenizer())
    ids, mask = tok(["Pick the CUBE", "put the spoon on the towel"])
    for row, m in zip(ids.tolist(), mask.tolist()):
        first = m.index(1)
        assert all(v == 32000 for v in row[:first]) and row[first] == 1 and row[-1] == 29871
        assert sum(m) == len(row) - first and all(m[first:])
        assert all(v < 31744 for v in row[first:])
    assert tok.encode("Pick the CUBE") == tok.encode("pick the cube")


@pytest.mark.skipif(
    AssetPaths.resolve().tokenizer_model is None,
    reason="Llama-2 tokenizer.model not found (set $VLA_TORCHRL_ASSETS)",
)
def test_prompt_with_the_llama2_tokenizer():
    sp = SentencePieceTokenizer(AssetPaths.resolve().tokenizer_model)
    ids = PromptTokenizer(sp).encode("Put the carrot on the plate")
    assert ids[0] == 1 and ids[-1] == 29871
    assert sp.decode(ids[1:-1]) == build_prompt("put the carrot on the plate")
    assert sp.sp.id_to_piece(29871) == "\u2581"
    assert 13 in ids  # the newline is byte-fallback <0x0A>


def test_action_statistics_are_openvla_quantiles_and_spread_demo_tokens_over_the_bins():
    from vla_torchrl.modules.processors import action_statistics

    g = torch.Generator().manual_seed(0)
    # expert-like deltas: a few cm per step on xyz, small rotations, binary gripper
    xyz = 0.03 * torch.randn(2000, 3, generator=g).clamp(-1.3, 1.3)
    rot = 0.05 * torch.randn(2000, 3, generator=g)
    grip = torch.where(torch.rand(2000, 1, generator=g) < 0.5, -1.0, 1.0)
    actions = torch.cat([xyz, rot, grip], -1)
    stats = action_statistics(actions)["action"]
    # reference: NumPy's linear-interpolation quantiles (what OpenVLA's statistics use)
    ref = actions.double().numpy()
    np.testing.assert_allclose(stats["q01"], np.quantile(ref, 0.01, axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats["q99"], np.quantile(ref, 0.99, axis=0), rtol=1e-9)
    assert stats["mask"] == [True] * 6 + [False]
    without = ActionTokenizer().actions_to_tokens(actions)
    with_stats = ActionTokenizer.from_norm_stats({"d": {"action": stats}}).actions_to_tokens(
        actions
    )
    used = [len(torch.unique(with_stats[:, j])) for j in range(6)]
    used_raw = [len(torch.unique(without[:, j])) for j in range(6)]
    # statistics-free: a few cm per step are a few dozen of the 256 bins; with q01/q99 the demo
    # tokens span (nearly) every bin, the first and the last included
    assert all(u < 40 for u in used_raw[:3]), used_raw
    assert all(u >= 230 for u in used), used
    assert int(with_stats[:, :6].min()) == 31744 and int(with_stats[:, :6].max()) == 31999
    # the gripper (mask false) keeps its two extreme tokens
    assert set(with_stats[:, 6].tolist()) == {31744, 31999}


def test_action_statistics_leave_constant_dims_unnormalised_and_reject_bad_shapes():
    from vla_torchrl.modules.processors import action_statistics

    actions = torch.zeros(10, 7)
    actions[:, 0] = torch.linspace(-0.05, 0.05, 10)
    stats = action_statistics(actions)["action"]
    assert stats["mask"] == [True] + [False] * 6  # constant dims would divide by ~0
    with pytest.raises(ValueError, match=r"expected \[N >= 1, D\]"):
        action_statistics(torch.zeros(7))
    with pytest.raises(ValueError, match="mask has 3 entries for 7 dims"):
        action_statistics(torch.zeros(4, 7), mask=[True] * 3)


def test_unnorm_key_on_a_model_without_statistics_is_an_error():
    # issue 16: unnorm_key="bridge_orig" on a checkpoint without that entry was ignored
    with pytest.raises(KeyError, match="unnorm_key='bridge_orig' is not in norm_stats"):
        ActionTokenizer.from_norm_stats({}, "bridge_orig")
    assert ActionTokenizer.from_norm_stats({}).unnormalize(torch.tensor([0.5])).item() == 0.5
