"""The typed, validated config of vla-torchrl-collect (scripted-expert demonstrations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vla_torchrl.config.load import build_config
from vla_torchrl.config.train_schema import EnvConfig, _check_assets
from vla_torchrl.errors import ConfigError

__all__ = ["CollectConfig", "to_collect_config"]


@dataclass
class CollectConfig:
    """What ``vla-torchrl-collect`` does.

    Args:
        env: the env group (``backend``, ``task``, ``num_envs``, ``max_episode_steps``, camera).
        out: output directory (the memory-mapped TensorDict + ``summary.json``).
        episodes: episodes to play (ids ``0 .. episodes - 1``).
        seed: env seed (scenes are a function of seed and episode id).
        filter_idle: drop idle steps (the paper's filter).
        keep_failures: keep unsuccessful episodes too.
        overwrite: replace an existing ``out``.
        privileged: also store the simulator state of every step (positions, grasp flag,
            expert phase) as labels for vision pretraining (ManiSkill only).
        expert_noise: standard deviation of Gaussian noise added to the expert's executed
            translation (metres on ManiSkill; the toy env's units there), recording its clean
            action (DART); 0 plays the expert as is.
        policy: a saved policy directory: it drives the episodes and the expert labels every
            step it visits (DAgger, Ross et al. 2011); every episode is kept, since the labels
            are the expert's whatever the policy did. None: the expert drives.
        policy_temperature: the policy's sampling temperature (0: greedy).
        expert_share: with ``policy``, the probability that a step (per env) executes the
            expert's action instead of the policy's (DAgger's beta; 0: the policy alone).
        torch_threads: torch's intra-op threads while collecting (the policy's forward);
            None: torch's default. 1 by default: on CPU rendering, torch's spinning threads
            starve the renderer (DAgger collection, 2 processes on 2 cores: 23.1 s per episode
            at the default, 4.8 s with 1 thread).
        progress_bar: show a progress bar (only on a terminal).
        assets: ``auto`` (default): a missing real asset (WidowX-250S, RL4VLA scenes, Llama-2
            tokenizer) falls back to the built-in stand-in with a log line; ``required``: it
            is an error instead (checked before anything is built).

    Examples:
        >>> CollectConfig(episodes=0)
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.ConfigError: episodes=0 must be >= 1 (how many expert episodes to play)
    """

    env: EnvConfig = field(default_factory=lambda: EnvConfig(num_envs=1))
    out: str = "data/demos"
    episodes: int = 64
    seed: int = 0
    filter_idle: bool = True
    keep_failures: bool = False
    overwrite: bool = False
    privileged: bool = False
    expert_noise: float = 0.0
    progress_bar: bool = True
    assets: str = "auto"
    policy: str | None = None
    policy_temperature: float = 0.6
    expert_share: float = 0.0
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        _check_assets(self.assets)
        if self.episodes < 1:
            raise ConfigError(
                f"episodes={self.episodes} must be >= 1 (how many expert episodes to play)"
            )
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")
        if not 0.0 <= self.expert_noise <= 0.05:
            raise ConfigError(
                f"expert_noise={self.expert_noise} must be in [0, 0.05]: the standard deviation "
                "of the noise on the executed translation per step (the expert moves at most "
                "0.04 m per step; DART uses noise of about the learner's error, e.g. 0.01)"
            )
        if not 0.0 <= self.expert_share <= 1.0:
            raise ConfigError(
                f"expert_share={self.expert_share} must be in [0, 1]: the share of steps that "
                "execute the expert's action while policy=... drives"
            )
        if not self.policy_temperature >= 0.0:
            raise ConfigError(
                f"policy_temperature={self.policy_temperature} must be >= 0 (0: greedy; the "
                "paper samples at 0.6)"
            )
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(
                f"torch_threads={self.torch_threads} must be >= 1, or null for torch's default "
                "(the CPU threads of the policy's forward; 1 leaves the cores to the renderer)"
            )
        if self.policy is not None and not str(self.policy).strip():
            raise ConfigError("policy is empty; give a saved policy directory or leave it null")
        if not str(self.out).strip():
            raise ConfigError("out is empty; give the output directory, e.g. out=data/demos")


def to_collect_config(cfg: Any) -> CollectConfig:
    """Build a :class:`CollectConfig` from a Hydra ``DictConfig`` (or a plain dict).

    Examples:
        >>> to_collect_config({"episodes": 3, "env": {"backend": "toy"}}).env.backend
        'toy'
    """
    return build_config(CollectConfig, cfg)
