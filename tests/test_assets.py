from __future__ import annotations

import logging
import os

import pytest

from vla_torchrl import assets
from vla_torchrl.assets import ASSETS_ENV_VAR, AssetPaths, configure_maniskill_assets


def _make_tree(root):
    (root / "maniskill/data/robots/widowx").mkdir(parents=True)
    (root / "maniskill/data/robots/widowx/wx250s.urdf").write_text("<robot/>")
    (root / "rl4vla/more_carrot").mkdir(parents=True)
    (root / "llama2-tokenizer").mkdir()
    (root / "llama2-tokenizer/tokenizer.model").write_bytes(b"x")
    return root


def test_explicit_path_wins_over_env_var(tmp_path, monkeypatch):
    a = _make_tree(tmp_path / "a")
    b = _make_tree(tmp_path / "b")
    monkeypatch.setenv(ASSETS_ENV_VAR, str(b))
    paths = AssetPaths.resolve(a)
    assert paths.root == a.resolve()
    assert paths.widowx_urdf == a.resolve() / "maniskill/data/robots/widowx/wx250s.urdf"
    assert paths.rl4vla_dir == a.resolve() / "rl4vla"
    assert paths.tokenizer_model == a.resolve() / "llama2-tokenizer/tokenizer.model"


def test_env_var_used_when_no_explicit_path(tmp_path, monkeypatch):
    b = _make_tree(tmp_path / "b")
    monkeypatch.setenv(ASSETS_ENV_VAR, str(b))
    assert AssetPaths.resolve().root == b.resolve()


def test_partial_tree_reports_only_what_exists(tmp_path, monkeypatch):
    (tmp_path / "llama2-tokenizer").mkdir()
    (tmp_path / "llama2-tokenizer/tokenizer.model").write_bytes(b"x")
    paths = AssetPaths.resolve(tmp_path)
    assert paths.maniskill_dir is None and paths.rl4vla_dir is None and paths.widowx_urdf is None
    assert paths.tokenizer_model is not None


def test_absent_assets_fall_back_with_one_log_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ASSETS_ENV_VAR, str(tmp_path / "missing"))
    monkeypatch.setattr(assets, "_SIBLING_SHARED_ASSETS", tmp_path / "also-missing")
    monkeypatch.setattr(assets, "_REPORTED", set())
    with caplog.at_level(logging.INFO, logger="vla_torchrl.assets"):
        first = AssetPaths.resolve()
        second = AssetPaths.resolve()
    assert first == second == AssetPaths(None, None, None, None)
    fallback_lines = [r for r in caplog.records if "none found" in r.getMessage()]
    assert len(fallback_lines) == 1


def test_configure_maniskill_sets_ms_asset_dir_but_respects_user(tmp_path, monkeypatch):
    root = _make_tree(tmp_path / "r")
    monkeypatch.delenv("MS_ASSET_DIR", raising=False)
    assert configure_maniskill_assets(AssetPaths.resolve(root)) == root.resolve() / "maniskill"
    assert os.environ["MS_ASSET_DIR"] == str(root.resolve() / "maniskill")
    monkeypatch.setenv("MS_ASSET_DIR", "/user/choice")
    assert str(configure_maniskill_assets(AssetPaths.resolve(root))) == "/user/choice"


@pytest.mark.skipif(not assets._SIBLING_SHARED_ASSETS.is_dir(), reason="no ../shared/assets here")
def test_shared_assets_next_to_checkout_are_found(monkeypatch):
    monkeypatch.delenv(ASSETS_ENV_VAR, raising=False)
    paths = AssetPaths.resolve()
    assert paths.widowx_urdf is not None and paths.rl4vla_dir is not None
