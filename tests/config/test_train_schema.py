from __future__ import annotations

import pytest

from vla_torchrl.config.load import compose_config, to_train_config
from vla_torchrl.config.train_schema import (
    ALGORITHMS,
    AlgoConfig,
    TrainConfig,
    register_task_names,
    validate,
)
from vla_torchrl.errors import ConfigError

SUITE = ["ind", "table", "obj", "obj-rep"]


def test_paper_defaults():
    cfg = compose_config(config_name="train")
    # FACTS.md reference hyperparameters
    assert cfg.model.lora_rank == 32
    assert (cfg.algo.clip_epsilon, cfg.algo.value_clip, cfg.algo.huber_delta) == (0.2, 0.2, 10.0)
    assert cfg.optim.max_grad_norm == 10.0
    assert (cfg.optim.lr, cfg.optim.value_lr) == (1e-4, 3e-3)
    assert (cfg.algo.gamma, cfg.algo.lmbda, cfg.algo.epochs) == (0.99, 0.95, 1)
    assert (cfg.model.temperature, cfg.model.eval_temperature) == (1.0, 0.6)
    assert (cfg.env.num_envs, cfg.collector.steps_per_env) == (64, 80)
    assert (cfg.optim.minibatch_size, cfg.optim.grad_accum_steps) == (8, 20)
    assert cfg.collector.frames_per_batch(cfg.env) == 5120
    assert cfg.algo.critic == "shared_h0" and cfg.env.width == 640 and cfg.env.height == 480
    assert cfg.run_dir == "runs/ppo-ind-seed0"
    # the dataclass defaults agree with the YAML
    assert TrainConfig() == to_train_config({"run_dir": "runs/default"})


@pytest.mark.parametrize("config_name", ["train", "train_cpu"])
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_composes_and_validates(config_name, algo):
    cfg = compose_config([f"algo={algo}"], config_name=config_name)
    assert cfg.algo.name == algo
    validate(cfg, tasks=SUITE, cuda_available=config_name != "train_cpu")


def test_algorithm_presets():
    orz = compose_config(["algo=ppo-orz"]).algo
    assert (orz.gamma, orz.lmbda) == (1.0, 1.0) and orz.uses_critic
    for name in ("grpo", "grpo-s"):
        assert not compose_config([f"algo={name}"]).algo.uses_critic
    assert compose_config(["algo=tpo"]).algo.reference == "initial"
    cpu = compose_config(config_name="train_cpu")
    assert (cpu.env.backend, cpu.model.name, cpu.device) == ("toy", "tiny", "cpu")
    assert cpu.env.num_envs * cpu.collector.steps_per_env < 1000


def _bad(overrides, *, tasks=SUITE, cuda=False):
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides, config_name="train"), tasks=tasks, cuda_available=cuda)
    return str(info.value)


@pytest.mark.parametrize(
    "overrides, phrases",
    [
        (["env.task=unseen-kitchen"], ["env.task='unseen-kitchen'", "not a known task", "table"]),
        (["algo.name=dpo"], ["algo.name='dpo'", "not a known algorithm", "grpo-s", "tpo"]),
        (["optim.lr=-1e-4"], ["optim.lr=-0.0001", "must be > 0", "1e-4"]),
        (["optim.value_lr=0"], ["optim.value_lr=0.0", "must be > 0", "3e-3"]),
        (["algo.clip_epsilon=0"], ["algo.clip_epsilon=0.0", "must be > 0", "0.2"]),
        (["algo.clip_epsilon=-0.2"], ["algo.clip_epsilon=-0.2", "must be > 0"]),
        (["algo.value_clip=0"], ["algo.value_clip=0.0", "must be > 0", "null to disable"]),
        (["model.temperature=0"], ["model.temperature=0.0", "must be > 0", "0.6"]),
        (["model.eval_temperature=-1"], ["model.eval_temperature=-1.0", "must be > 0"]),
        (["model.lora_rank=0"], ["model.lora_rank=0", ">= 1", "32"]),
        (["algo.critic_warmup=-1"], ["algo.critic_warmup=-1", ">= 0", "value head only"]),
        (
            ["algo.critic=separate", "algo.critic_trains_backbone=false"],
            ["algo.critic_trains_backbone=false", "algo.critic=separate", "shared_h0"],
        ),
        (
            ["algo=grpo", "algo.critic_warmup=2"],
            ["algo.critic_warmup=2", "algo.critic=none", "shared_h0"],
        ),
        (["algo.gamma=1.5"], ["algo.gamma=1.5", "[0, 1]", "0.99"]),
        (["algo.lmbda=-0.1"], ["algo.lmbda=-0.1", "[0, 1]", "0.95"]),
        (
            ["algo=grpo", "algo.critic=shared_h0"],
            ["algo.name=grpo", "critic=shared_h0", "algo.critic=none"],
        ),
        (["algo=grpo-s", "algo.critic=separate"], ["algo.name=grpo-s", "algo.critic=none"]),
        (
            ["algo=tpo", "algo.reference=none"],
            ["algo.name=tpo", "reference", "algo.reference=initial"],
        ),
        (["algo=ppo", "algo.critic=none"], ["algo.name=ppo", "needs a critic"]),
        (["algo=ppo-orz", "algo.gamma=0.99"], ["ppo-orz", "gamma=0.99", "algo=ppo"]),
        (["algo.kl_coef=0.1"], ["algo.kl_coef=0.1", "reference"]),
        (["optim.minibatch_size=7"], ["5120", "7 x 20 = 140", "not a multiple", "divides"]),
        (["collector.steps_per_env=33"], ["64 x 33 = 2112", "8 x 20 = 160", "not a multiple"]),
        (["algo=grpo", "algo.group_size=7"], ["algo.group_size=7", "env.num_envs=64"]),
        (["device=cuda"], ["device='cuda'", "no CUDA device", "device=cpu"]),
        (["device=cuda:1"], ["device='cuda:1'", "no CUDA device"]),
        (["device=tpu"], ["device='tpu'", "use auto, cpu, cuda"]),
        (["model.lora_rank=abc"], ["model.lora_rank='abc'", "expected an integer"]),
        (["algo.critic=mlp"], ["algo.critic='mlp'", "shared_h0"]),
        (["logger.wandb=cloud"], ["logger.wandb='cloud'", "offline"]),
        (["seed=-3"], ["seed=-3", ">= 0"]),
        (["optim.max_grad_norm=abc"], ["optim.max_grad_norm='abc'", "a number or null"]),
        (["algo.reference=ema"], ["algo.reference='ema'", "initial"]),
    ],
)
def test_bad_values_are_named_with_a_fix(overrides, phrases):
    message = _bad(overrides)
    for phrase in phrases:
        assert phrase in message, (phrase, message)


def test_unknown_keys_are_refused():
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) algo.clip in algo; known keys: .*clip_epsilon"
    ):
        to_train_config({"algo": {"clip": 0.1}})
    with pytest.raises(ConfigError, match="unknown config key.*learning_rate in the top level"):
        to_train_config({"learning_rate": 0.1})


def test_cuda_accepted_when_present():
    validate(compose_config(["device=cuda"]), tasks=SUITE, cuda_available=True)


def test_task_registry_hook():
    register_task_names("test-suite", lambda: ["ind", "shelf"])
    try:
        validate(compose_config(["env.task=shelf"]), cuda_available=True)
        with pytest.raises(ConfigError, match="known tasks: ind, shelf"):
            validate(compose_config(["env.task=table"]), cuda_available=True)
    finally:
        from vla_torchrl.config import train_schema as config

        config._TASK_REGISTRY.pop("test-suite")


def test_dataclass_post_init_checks_directly():
    with pytest.raises(ConfigError, match="algo.name='a2c'"):
        AlgoConfig(name="a2c")
    with pytest.raises(ConfigError, match="algo.epochs=0"):
        AlgoConfig(epochs=0)


def test_model_small_and_arch_overrides_are_validated():
    from vla_torchrl.config.load import compose_config
    from vla_torchrl.errors import ConfigError

    cfg = compose_config(["model=small", "model.arch.llm_num_layers=2"], config_name="train_cpu")
    assert cfg.model.name == "small" and cfg.model.arch == {"llm_num_layers": 2}
    cases = {
        "+model.arch.no_such_field=1": "unknown field",
        "model.arch.llm_hidden_size=30": "not divisible",  # OpenVLAConfig's own check
        "model.arch=3": "a mapping",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            compose_config(["model=small", override], config_name="train_cpu")
    with pytest.raises(ConfigError, match="random-init"):
        compose_config(["model=openvla", "model.arch.image_size=96"], config_name="train_cpu")
