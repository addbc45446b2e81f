from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla_torchrl.errors import ConfigError, UserError
from vla_torchrl.recipes._cli import run_cli

REPO = Path(__file__).resolve().parents[2]


def test_plain_mode_user_error_one_line(capsys):
    def main(argv):
        assert argv == ["--flag"]
        raise ConfigError("optim.lr=-1 must be > 0\n  (a learning rate)")

    assert run_cli(main, argv=["--flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: optim.lr=-1 must be > 0 | (a learning rate)")


def test_plain_mode_status_and_bugs(capsys):
    assert run_cli(lambda argv: None, argv=[]) == 0
    assert run_cli(lambda argv: 3, argv=[]) == 3
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_cli(lambda argv: 1 / 0, argv=[])


def test_debug_flag_and_env(monkeypatch):
    def main(argv):
        assert "--debug" not in argv
        raise UserError("bad")

    with pytest.raises(UserError):
        run_cli(main, argv=["--debug"])
    monkeypatch.setenv("VLA_TORCHRL_DEBUG", "1")
    with pytest.raises(UserError):
        run_cli(main, argv=[])


def _show_config(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("VLA_TORCHRL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "vla_torchrl.recipes.show_config", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, phrase",
    [
        # our validation, inside the Hydra task
        (
            ["--config-name", "train_cpu", "algo.clip_epsilon=-1"],
            "algo.clip_epsilon=-1.0 must be > 0",
        ),
        # Hydra/OmegaConf composition errors, before the task
        (["algo.nope=1"], "Could not override 'algo.nope'"),
        (["algo=dpo"], "Could not find 'algo/dpo'"),
        (["device=cuda:7"], "cuda:7"),
    ],
)
def test_hydra_entry_point_one_line(tmp_path, args, phrase):
    if "device=cuda:7" in args:
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has 8 GPUs")
    proc = _show_config(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and phrase in proc.stderr
    assert "Traceback" not in proc.stderr and "Error executing job" not in proc.stderr
    assert "search path" not in proc.stderr
    assert os.environ.get("HYDRA_FULL_ERROR") is None


def test_hydra_entry_point_debug_and_success(tmp_path):
    proc = _show_config(tmp_path, "model.lora_rank=0", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "model.lora_rank=0 must be an integer >= 1" in proc.stderr
    ok = _show_config(tmp_path, "--config-name", "train_cpu", "algo=grpo")
    assert ok.returncode == 0, ok.stderr
    assert '"name": "grpo"' in ok.stdout
    assert list(tmp_path.iterdir()) == []  # the dry run leaves no Hydra output behind


def test_hydra_parse_value_error_is_one_line(tmp_path, monkeypatch, capsys):
    """Hydra raises a plain ValueError for ``algo=true`` while composing (found by the fuzz
    test); before the task starts that is a command-line mistake, not a bug."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLA_TORCHRL_DEBUG", raising=False)
    ran = []
    status = run_cli(ran.append, config_name="train_cpu", argv=["algo=true"])
    err = capsys.readouterr().err
    assert status == 2 and not ran
    assert err.startswith("error: bad command line 'algo=true'") and err.count("\n") == 1
    assert "Config group override must be a string" in err


def test_io_error_before_the_task_is_not_a_bad_command_line(tmp_path, monkeypatch, capsys):
    """An OSError while Hydra prepares the run (e.g. run_dir under a file) names the path, not
    the command line (issue 17 item 9)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLA_TORCHRL_DEBUG", raising=False)
    (tmp_path / "file").write_text("x")
    ran = []
    status = run_cli(
        ran.append,
        config_name="train_cpu",
        argv=[f"run_dir={tmp_path / 'file' / 'run'}", "hydra/job_logging=none"],
    )
    err = capsys.readouterr().err
    assert status == 2 and not ran and err.count("\n") == 1
    assert err.startswith(f"error: cannot write {tmp_path / 'file'}") and "bad command" not in err


def test_unknown_key_is_not_advised_as_plus_key(tmp_path):
    """Hydra's "+foo=1" advice would be refused by the schema: the line says the key does not
    exist instead (issue 17 item 9)."""
    proc = _show_config(tmp_path, "algo.foo=1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "+algo.foo" not in proc.stderr and "no such config key" in proc.stderr
