"""Model layout (7B on meta), vision features, config parsing, HF-layout checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from tests.modules.conftest import NORM_STATS, make_tiny_model
from vla_torchrl.modules.checkpoint import CheckpointError, load_openvla, save_openvla
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.modules.openvla import OpenVLA


@pytest.fixture(scope="module")
def meta_7b() -> OpenVLA:
    with torch.device("meta"):
        return OpenVLA(OpenVLAConfig.openvla_7b())


def test_7b_parameter_count_on_meta(meta_7b):
    assert sum(p.numel() for p in meta_7b.parameters()) == 7_541_237_184


def test_7b_key_set_and_shapes(meta_7b):
    state = meta_7b.state_dict()
    # tensor count derived by hand from the architecture: DINO 7 + 24 blocks x 14,
    # SigLIP 18 (incl. 13 attention-pool tensors) + 27 blocks x 12, projector 6,
    # Llama embed + 32 layers x 9 + norm + lm_head
    assert len(state) == (7 + 24 * 14) + (18 + 27 * 12) + 6 + (1 + 32 * 9 + 2)
    assert not any(k.endswith(".gamma") for k in state)
    assert {k.split(".")[0] for k in state} == {"vision_backbone", "projector", "language_model"}
    expected = {
        "vision_backbone.featurizer.cls_token": (1, 1, 1024),
        "vision_backbone.featurizer.reg_token": (1, 4, 1024),
        "vision_backbone.featurizer.pos_embed": (1, 256, 1024),
        "vision_backbone.featurizer.patch_embed.proj.weight": (1024, 3, 14, 14),
        "vision_backbone.featurizer.blocks.23.ls2.scale_factor": (1024,),
        "vision_backbone.featurizer.norm.weight": (1024,),
        "vision_backbone.fused_featurizer.pos_embed": (1, 256, 1152),
        "vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight": (4304, 1152),
        "vision_backbone.fused_featurizer.attn_pool.latent": (1, 1, 1152),
        "projector.fc1.weight": (8704, 2176),
        "projector.fc2.weight": (4096, 8704),
        "projector.fc3.weight": (4096, 4096),
        "language_model.model.embed_tokens.weight": (32064, 4096),
        "language_model.model.layers.31.mlp.down_proj.weight": (4096, 11008),
        "language_model.model.norm.weight": (4096,),
        "language_model.lm_head.weight": (32064, 4096),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "vision_backbone.fused_featurizer.cls_token" not in state


def test_vision_features_are_penultimate_block_patches():
    model = make_tiny_model()
    pixels = torch.randn(2, 6, 28, 28)
    feats = model.vision_backbone(pixels)
    dino, siglip = model.vision_backbone.featurizer, model.vision_backbone.fused_featurizer
    # independent path: timm's own intermediate-layer API (no final norm, prefix dropped)
    ref_d = dino.get_intermediate_layers(pixels[:, :3], n=[len(dino.blocks) - 2], norm=False)[0]
    ref_s = siglip.get_intermediate_layers(pixels[:, 3:], n=[len(siglip.blocks) - 2], norm=False)[0]
    torch.testing.assert_close(feats, torch.cat([ref_d, ref_s], dim=-1))
    assert dino.num_prefix_tokens == 5 and siglip.num_prefix_tokens == 0


def test_patches_follow_bos_in_left_padded_batch():
    model = make_tiny_model()
    ids = torch.tensor([[32000, 32000, 1, 7, 29871], [1, 5, 6, 7, 29871]])
    mask = (ids != 32000).long()
    patches = torch.randn(2, 16, 64)
    embeds, full_mask, pos = model.assemble(ids, mask, patches)
    table = model.embed_tokens
    torch.testing.assert_close(embeds[0, 2], table(torch.tensor(1)))
    torch.testing.assert_close(embeds[0, 3:19], patches[0])
    torch.testing.assert_close(embeds[0, 19:], table(torch.tensor([7, 29871])))
    torch.testing.assert_close(embeds[1, 0], table(torch.tensor(1)))
    torch.testing.assert_close(embeds[1, 1:17], patches[1])
    assert full_mask[0].tolist() == [0, 0] + [1] * 19
    assert pos[0, 2:].tolist() == list(range(19)) and pos[1].tolist() == list(range(21))


def test_config_from_original_openvla_json(tmp_path):
    original = {  # the fields of openvla/openvla-7b's config.json that matter
        "architectures": ["OpenVLAForActionPrediction"],
        "model_type": "openvla",
        "timm_model_ids": [
            "vit_large_patch14_reg4_dinov2.lvd142m",
            "vit_so400m_patch14_siglip_224",
        ],
        "image_sizes": [224, 224],
        "use_fused_vision_backbone": True,
        "n_action_bins": 256,
        "pad_token_id": 32000,
        "pad_to_multiple_of": 64,
        "text_config": {"model_type": "llama", "vocab_size": 32064, "pad_token_id": 32000},
        "norm_stats": NORM_STATS,
    }
    (tmp_path / "config.json").write_text(json.dumps(original))
    cfg = OpenVLAConfig.from_json(tmp_path)
    assert cfg.norm_stats == NORM_STATS
    assert cfg.to_dict() == OpenVLAConfig.openvla_7b(norm_stats=NORM_STATS).to_dict()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"llm_num_heads": 3}, "not divisible"),
        ({"image_size": 30}, "not a multiple"),
        ({"norm_stats": {"x": {"q01": [0]}}}, "norm_stats"),
        ({"pad_token_id": 40000}, "outside the vocabulary"),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        OpenVLAConfig.tiny(**overrides)


def _assert_identical(a: OpenVLA, b: OpenVLA) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    model = make_tiny_model()
    save_openvla(model, tmp_path, max_shard_size="3MB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2
    assert json.loads((tmp_path / "config.json").read_text())["norm_stats"] == NORM_STATS
    loaded = load_openvla(tmp_path)
    _assert_identical(model, loaded)
    assert loaded.config == model.config
    # same outputs, including the rebuilt rotary buffers
    ids = torch.tensor([[1, 5, 29871]])
    pixels = torch.randn(1, 6, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(pixels, ids, ids * 0 + 1), model(pixels, ids, ids * 0 + 1)
        )
    bf16 = load_openvla(tmp_path, dtype=torch.bfloat16)
    assert bf16.projector.fc1.weight.dtype == torch.bfloat16


def test_single_file_checkpoint(tmp_path):
    model = make_tiny_model()
    save_openvla(model, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    _assert_identical(model, load_openvla(tmp_path))


def test_truncated_shard_raises_clear_error(tmp_path):
    save_openvla(make_tiny_model(), tmp_path, max_shard_size="3MB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_openvla(tmp_path)


def test_missing_shard_and_missing_tensor_and_mismatch(tmp_path):
    save_openvla(make_tiny_model(), tmp_path, max_shard_size="3MB")
    index_file = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    first = sorted(tmp_path.glob("model-*.safetensors"))[0]
    first.rename(tmp_path / "moved.bin")
    with pytest.raises(CheckpointError, match="partial"):
        load_openvla(tmp_path)
    (tmp_path / "moved.bin").rename(first)
    dropped = dict(index)
    dropped["weight_map"] = {k: v for k, v in index["weight_map"].items() if "fc3" not in k}
    index_file.write_text(json.dumps(dropped))
    with pytest.raises(CheckpointError, match="missing tensors"):
        load_openvla(tmp_path)
    index_file.write_text(json.dumps(index))
    config = json.loads((tmp_path / "config.json").read_text())
    config["vla_torchrl"]["llm_intermediate_size"] = 96
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape"):
        load_openvla(tmp_path)


def test_no_weights_raises(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(OpenVLAConfig.tiny().to_hf_dict()))
    with pytest.raises(CheckpointError, match="No safetensors weights"):
        load_openvla(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_openvla(tmp_path / "absent")


def test_norm_stats_from_dataset_statistics_file(tmp_path):
    data = OpenVLAConfig.tiny().to_hf_dict()
    (tmp_path / "config.json").write_text(json.dumps(data))
    (tmp_path / "dataset_statistics.json").write_text(json.dumps(NORM_STATS))
    assert OpenVLAConfig.from_json(tmp_path).norm_stats == NORM_STATS


def test_layer_scale_init_sets_dino_gammas_and_wakes_the_residual_branches():
    from vla_torchrl.modules.config import DINO_TIMM_ID, SIGLIP_TIMM_ID, ViTConfig
    from vla_torchrl.modules.vision import build_tower

    default = ViTConfig(DINO_TIMM_ID, 32, 2, 2, 8, 2.0)
    scratch = ViTConfig(DINO_TIMM_ID, 32, 2, 2, 8, 2.0, layer_scale_init=1.0)
    torch.manual_seed(0)
    quiet = build_tower(default, 32)
    torch.manual_seed(0)
    awake = build_tower(scratch, 32)
    gammas = [b.ls1.scale_factor for b in awake.blocks] + [b.ls2.scale_factor for b in awake.blocks]
    assert all(torch.equal(g, torch.ones(32)) for g in gammas)
    assert torch.allclose(quiet.blocks[0].ls1.scale_factor, torch.full((32,), 1e-5))
    # same weights otherwise; a block with gamma 1e-5 is ~the identity, one with gamma 1 is not
    x = torch.randn(2, 21, 32)
    with torch.no_grad():
        quiet_change = (quiet.blocks[0](x) - x).abs().max()
        awake_change = (awake.blocks[0](x) - x).abs().max()
    assert quiet_change < 1e-3 < awake_change
    assert OpenVLAConfig.small().dino.layer_scale_init == 1.0  # the from-scratch preset
    # a saved config keeps it; the SigLIP tower has no LayerScale to set
    assert OpenVLAConfig.from_dict(OpenVLAConfig.small().to_hf_dict()).dino.layer_scale_init == 1.0
    with pytest.raises(ValueError, match="only the DINO tower"):
        ViTConfig(SIGLIP_TIMM_ID, 32, 2, 2, 8, 2.0, layer_scale_init=1.0)
    with pytest.raises(ValueError, match=r"must be in \(0, 10\]"):
        ViTConfig(DINO_TIMM_ID, 32, 2, 2, 8, 2.0, layer_scale_init=0.0)


def test_conv_stem_keeps_the_token_grid_and_sees_across_patch_borders():
    from vla_torchrl.modules.config import DINO_TIMM_ID, SIGLIP_TIMM_ID, ViTConfig
    from vla_torchrl.modules.vision import ConvStem, build_tower

    patchify = build_tower(ViTConfig(DINO_TIMM_ID, 32, 2, 2, 8, 2.0), 32)
    conv = build_tower(ViTConfig(DINO_TIMM_ID, 32, 2, 2, 8, 2.0, stem="conv"), 32)
    assert isinstance(conv.patch_embed.proj, ConvStem)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = patchify.patch_embed(x), conv.patch_embed(x)
    assert a.shape == b.shape == (2, 16, 32)  # the same 4 x 4 grid of 32-wide tokens
    # a change to the last pixel of the first row of patch (0, 0) reaches only token 0 through
    # the patchify convolution; the stem's overlapping 3x3 windows (token k sees pixels
    # 8k-7..8k+7 per axis) carry it into token 1 too (GroupNorm's per-image statistics move
    # every token a little, far less)
    y = x.clone()
    y[..., 0, 7] += 1.0
    with torch.no_grad():
        da = (patchify.patch_embed(y) - a).abs().amax(-1)[0]
        db = (conv.patch_embed(y) - b).abs().amax(-1)[0]
    assert da[0] > 0 and torch.all(da[1:] == 0)
    assert db[0] > 0 and db[1] > 5 * db[2:].max()
    with pytest.raises(ValueError, match="product of 2s and 3s"):
        ViTConfig(SIGLIP_TIMM_ID, 32, 2, 2, 14, 2.0, stem="conv")
    with pytest.raises(ValueError, match="use 'patch'"):
        ViTConfig(SIGLIP_TIMM_ID, 32, 2, 2, 8, 2.0, stem="pixels")


def test_a_patch_12_conv_stem_keeps_the_8x8_grid_at_96_px_with_hand_computed_windows():
    from vla_torchrl.modules.config import SIGLIP_TIMM_ID, ViTConfig, stem_strides
    from vla_torchrl.modules.vision import ConvStem

    assert stem_strides(12) == [2, 2, 3] and stem_strides(16) == [2, 2, 2, 2]
    for bad in (0, 5, 14):
        with pytest.raises(ValueError, match="product of 2s and 3s"):
            stem_strides(bad)
    cfg = OpenVLAConfig.small(image_size=96, dino={"patch_size": 12}, siglip={"patch_size": 12})
    assert cfg.num_patches == 64  # the same token grid as the 64 px preset
    torch.manual_seed(0)
    stem = ConvStem(3, 32, patch_size=12)
    convs = [m for m in stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0]) for c in convs] == [(3, 2), (3, 2), (5, 3), (1, 1)]
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        base = stem(x)
    assert base.shape == (1, 32, 4, 4)
    # by hand: jump 12, receptive field 1 + 2*1 + 2*2 + 4*4 = 23 px, first window starts at
    # -(1*1 + 1*2 + 1*4) = -7, so token column j sees pixel columns 12j-7 .. 12j+15: column 11
    # (the last of patch 0) reaches tokens 0 and 1, column 16 token 1 only, column 2 token 0 only
    for col, reached in ((11, {0, 1}), (16, {1}), (2, {0})):
        y = x.clone()
        y[..., 20, col] += 3.0
        with torch.no_grad():
            change = (stem(y) - base).abs().amax(1)[0, 1]  # row 1 of the grid holds pixel row 20
        inside = min(change[j] for j in reached)
        outside = max(change[j] for j in range(4) if j not in reached)
        assert inside > 5 * outside, (col, change)
    ViTConfig(SIGLIP_TIMM_ID, 32, 2, 2, 12, 2.0, stem="conv")  # accepted


def test_a_small_policy_saves_and_reloads_with_its_stem(tmp_path):
    from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
    from vla_torchrl.modules.vision import ConvStem
    from vla_torchrl.training.policy import build_policy_from_config, load_policy, save_policy

    algo = AlgoConfig(name="sft", critic="none")
    for stem, arch in (
        ("conv", {}),  # model=small's own towers
        ("patch", {"dino": {"stem": "patch"}, "siglip": {"stem": "patch"}}),
    ):
        model = ModelConfig(name="small", finetune="full", dtype="float32", arch=arch)
        bundle = build_policy_from_config(model, algo)
        cfg = bundle.model.config
        assert cfg.dino.stem == cfg.siglip.stem == stem
        assert cfg.dino.layer_scale_init == 1.0  # the rest of the preset's tower is kept
        tower = bundle.model.vision_backbone.featurizer
        assert isinstance(tower.patch_embed.proj, ConvStem) == (stem == "conv")
        with torch.no_grad():
            for p in bundle.model.parameters():
                p.add_(0.01 * torch.randn_like(p))  # not the fixed-seed init
        back = load_policy(save_policy(bundle, tmp_path / stem, model, algo))
        assert back.model.config.dino.stem == stem
        mine = bundle.model.state_dict()
        assert all(torch.equal(v, mine[k]) for k, v in back.model.state_dict().items())


def _locate_square(stem: str, seed: int, steps: int = 150) -> tuple[float, float]:
    """A 2-block tower trained to regress where a 3x3 white square lies in a noisy 32 px image;
    returns (held-out RMSE, predict-the-mean RMSE), in pixels per axis."""
    from vla_torchrl.modules.config import DINO_TIMM_ID, ViTConfig
    from vla_torchrl.modules.vision import _penultimate_patches, build_tower

    def batch(n, g):
        x = 0.3 * torch.rand(n, 3, 32, 32, generator=g)
        pos = torch.randint(1, 28, (n, 2), generator=g)
        for i, (r, c) in enumerate(pos.tolist()):
            x[i, :, r : r + 3, c : c + 3] = 1.0
        return x, (pos.float() + 1.0) / 32  # the square's centre, in [0, 1]

    torch.manual_seed(seed)
    spec = ViTConfig(DINO_TIMM_ID, 32, 2, 2, 8, 2.0, layer_scale_init=1.0, stem=stem)
    vit, head = build_tower(spec, 32), torch.nn.Linear(16 * 32, 2)
    opt = torch.optim.AdamW([*vit.parameters(), *head.parameters()], lr=2e-3)

    def predict(x):
        return head(_penultimate_patches(vit, x).flatten(1))  # the tokens OpenVLA reads

    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = batch(32, g)
        loss = (predict(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(256, torch.Generator().manual_seed(1000 + seed))
    with torch.no_grad():
        rmse = float((predict(x) - y).pow(2).mean().sqrt()) * 32
    return rmse, float((y - y.mean(0)).pow(2).mean().sqrt()) * 32


@pytest.mark.parametrize("seed", [0, 1])
def test_a_conv_stem_tower_learns_to_localise_faster_than_a_patchify_one(seed):
    """The reason model=small has a conv stem (issue 14), as a learning test: at an equal
    budget of 150 steps, the conv stem places a 3x3 square (inside an 8 px patch) to about
    half the patchify tower's error (measured: 1.1 / 0.85 px against 2.2 / 2.0 px)."""
    from vla_torchrl.utils.threads import torch_threads

    with torch_threads(1):  # tiny matmuls: one thread is the fastest, also on a busy machine
        conv, baseline = _locate_square("conv", seed)
        patch, _ = _locate_square("patch", seed)
    assert patch < 0.5 * baseline  # both towers learn the task ...
    assert conv < 0.7 * patch  # ... and the conv stem clearly better
