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


# ------------------------------------ assets=required: no silent fallback (issue 16)


def _no_assets(tmp_path, monkeypatch):
    monkeypatch.setenv(ASSETS_ENV_VAR, str(tmp_path / "missing"))
    monkeypatch.setattr(assets, "_SIBLING_SHARED_ASSETS", tmp_path / "also-missing")
    monkeypatch.delenv("MS_ASSET_DIR", raising=False)
    monkeypatch.delenv(assets.REQUIRE_ASSETS_ENV_VAR, raising=False)


def test_required_assets_turn_each_fallback_into_an_error(tmp_path, monkeypatch):
    """With no assets anywhere: under ``auto`` the tokenizer and the scene source fall back;
    under ``required`` both refuse, naming the missing asset and the way out, and the up-front
    check names the robot and the scenes at once. Workers inherit it (an env variable)."""
    from vla_torchrl.envs.asset_library import resolve_asset_source
    from vla_torchrl.modules.processors.prompt import BuiltinTokenizer, default_text_tokenizer

    _no_assets(tmp_path, monkeypatch)
    assets.apply_assets_policy("auto")
    assert isinstance(default_text_tokenizer(), BuiltinTokenizer)
    assert resolve_asset_source("auto") == "procedural"
    with pytest.raises(assets.MissingAssetError, match="RL4VLA scene.*and the WidowX-250S"):
        assets.apply_assets_policy("required", backend="maniskill")
    assert os.environ[assets.REQUIRE_ASSETS_ENV_VAR] == "1"  # set before the check: inherited
    with pytest.raises(assets.MissingAssetError, match="Llama-2 tokenizer.model.*assets=auto"):
        default_text_tokenizer()
    with pytest.raises(assets.MissingAssetError, match="RL4VLA scene assets"):
        resolve_asset_source("auto")
    assets.apply_assets_policy("required", backend="toy")  # the toy env needs no asset
    assets.apply_assets_policy("auto")
    assert assets.REQUIRE_ASSETS_ENV_VAR not in os.environ


def test_required_assets_pass_when_present(tmp_path, monkeypatch):
    _no_assets(tmp_path, monkeypatch)
    root = _make_tree(tmp_path / "r")
    monkeypatch.setenv(ASSETS_ENV_VAR, str(root))
    try:
        assets.apply_assets_policy("required", backend="maniskill")  # no error
    finally:
        assets.apply_assets_policy("auto")


def test_an_unknown_assets_value_is_a_config_error():
    from vla_torchrl.config.collect_schema import CollectConfig
    from vla_torchrl.config.train_schema import TrainConfig
    from vla_torchrl.errors import ConfigError

    for cls in (TrainConfig, CollectConfig):
        with pytest.raises(ConfigError, match="assets='maybe' is unknown; use auto"):
            cls(assets="maybe")


def test_assets_required_on_the_command_line_is_one_line(tmp_path):
    """``vla-torchrl-collect assets=required`` with no assets: one line, exit 2, nothing built."""
    import subprocess
    import sys

    env = {**os.environ, ASSETS_ENV_VAR: str(tmp_path / "missing")}
    env.pop("MS_ASSET_DIR", None)
    code = "import sys; from vla_torchrl import assets; assets._SIBLING_SHARED_ASSETS = "
    code += f"__import__('pathlib').Path({str(tmp_path / 'none')!r}); "
    code += "from vla_torchrl.recipes.collect import main; "
    code += f"sys.exit(main(['assets=required', 'out={tmp_path / 'd'}']))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2, result.stderr[-1500:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert "assets=required" in lines[-1] and "WidowX-250S" in lines[-1]
    assert not (tmp_path / "d").exists()
