"""Typed, validated training configs, composed by Hydra from the YAML groups in ``conf/``.

Hydra composes plain YAML groups (``env``, ``model``, ``algo``, ``collector``, ``optim``,
``logger``) into a ``DictConfig``; :func:`to_train_config` turns it into these dataclasses, whose
``__post_init__`` checks every value on its own, and :func:`validate` then checks the values
against each other and against the world (known task names, a CUDA device) before any expensive
work. Dataclasses rather than OmegaConf structured configs because OmegaConf has no ``Literal``;
unknown keys and wrong types are still refused, with the key's full name.

Defaults are the paper's recipe (FACTS.md; Sec. 4): LoRA rank 32, PPO clip 0.2, value clip 0.2,
Huber delta 10, grad clip 10, AdamW lr 1e-4 (LoRA) / 3e-3 (value head), gamma 0.99,
lambda 0.95, 1 epoch, temperature 1.0 (train) / 0.6 (eval), 64 envs x 80 steps per rollout,
minibatch 8 x 20 accumulation steps. The ``train_cpu`` config is a small CPU preset.

Examples:
    >>> cfg = TrainConfig()
    >>> cfg.algo.clip_epsilon, cfg.model.lora_rank, cfg.collector.frames_per_batch(cfg.env)
    (0.2, 32, 5120)
    >>> AlgoConfig(name="ppo", clip_epsilon=0.0)
    Traceback (most recent call last):
    ...
    vla_torchrl.errors.ConfigError: algo.clip_epsilon=0.0 must be > 0 (PPO clips the ratio to [1-eps, 1+eps]; the paper uses 0.2)
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vla_torchrl.errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "AlgoConfig",
    "CollectorConfig",
    "DistConfig",
    "EnvConfig",
    "LoggerConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "WHOLE_TRAJECTORY_ALGOS",
    "episode_mode",
    "known_tasks",
    "register_task_names",
    "validate",
]

Algorithm = Literal["sft", "ppo", "ppo-orz", "grpo", "grpo-s", "tpo"]
ALGORITHMS: tuple[str, ...] = typing.get_args(Algorithm)
CriticKind = Literal["none", "shared_h0", "shared_hn", "shared_concat", "separate"]
EpisodeMode = Literal["auto", "fixed", "until_done"]
#: algorithms that compare whole trajectories (GRPO / GRPO(s) groups, TPO pairs):
#: ``collector.episodes=auto`` collects fixed-length episodes for them (issue 15)
WHOLE_TRAJECTORY_ALGOS: tuple[str, ...] = ("grpo", "grpo-s", "tpo")

# Registry hook: the env layer (which owns SUITE) registers its task names here, so this module
# never imports it. ``validate`` also takes the names as an argument.
_TASK_REGISTRY: dict[str, Callable[[], Collection[str]]] = {}


def register_task_names(source: str, names: Collection[str] | Callable[[], Collection[str]]):
    """Register task names (or a callable returning them) under ``source`` for :func:`validate`.

    Examples:
        >>> register_task_names("doctest", ["pick-a", "pick-b"])
        >>> "pick-a" in known_tasks()
        True
        >>> _ = _TASK_REGISTRY.pop("doctest")
    """
    _TASK_REGISTRY[source] = names if callable(names) else (lambda n=tuple(names): n)


def known_tasks() -> set[str] | None:
    """All registered task names, or None when nothing is registered (task names unchecked)."""
    if not _TASK_REGISTRY:
        return None
    return {name for getter in _TASK_REGISTRY.values() for name in getter()}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(name: str, value: float, hint: str) -> None:
    _check(
        isinstance(value, int | float) and math.isfinite(value) and value > 0,
        f"{name}={value!r} must be > 0 ({hint})",
    )


def _unit(name: str, value: float, hint: str) -> None:
    _check(
        isinstance(value, int | float) and 0.0 <= value <= 1.0,
        f"{name}={value!r} must lie in [0, 1] ({hint})",
    )


@dataclass
class EnvConfig:
    """Environment: which task, how many parallel envs, episode length, camera.

    Args:
        backend: ``"maniskill"`` (the paper's WidowX scene) or ``"toy"`` (fast tests).
        task: a task name of the SUITE (``"ind"``, ``"table"``, ...) or of the toy env.
        num_envs: parallel environments (the paper: 64).
        max_episode_steps: episode length (the paper: 80).
        width, height: camera resolution (the paper: 640 x 480).
        options: extra keyword options of the backend's env (toy: ``ToyReachConfig`` fields such
            as ``num_targets`` or ``use_gripper``; ManiSkill: ``make_env`` options).
        transforms: TorchRL transforms appended to the env, in order, each
            ``{_target_: package.Transform, <its arguments>}`` (Hydra ``instantiate``), e.g.
            ``env.transforms='[{_target_: torchrl.envs.RewardScaling, loc: 0.0, scale: 2.0}]'``.
    """

    backend: Literal["maniskill", "toy"] = "maniskill"
    task: str = "ind"
    num_envs: int = 64
    max_episode_steps: int = 80
    width: int = 640
    height: int = 480
    options: dict = field(default_factory=dict)
    transforms: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i, spec in enumerate(self.transforms):
            _check(
                isinstance(spec, Mapping) and isinstance(spec.get("_target_"), str),
                f"env.transforms[{i}]={spec!r} must be a mapping with a _target_ naming a "
                "TorchRL transform, e.g. {_target_: torchrl.envs.RewardScaling, loc: 0, scale: 2}",
            )
        _check(
            self.backend in ("maniskill", "toy"),
            f"env.backend={self.backend!r} is unknown; use 'maniskill' or 'toy'",
        )
        _check(bool(self.task), "env.task is empty; name a task, e.g. env.task=ind")
        _check(
            isinstance(self.options, dict),
            f"env.options={self.options!r} must be a mapping of backend options, e.g. "
            "env.options={asset_source: procedural}",
        )
        for name in ("num_envs", "max_episode_steps", "width", "height"):
            value = getattr(self, name)
            _check(value >= 1, f"env.{name}={value} must be >= 1")


@dataclass
class ModelConfig:
    """Policy model.

    Args:
        name: ``"openvla"`` (7B, needs ``checkpoint``) or ``"tiny"`` (random small VLA for CPU).
        checkpoint: directory of an OpenVLA checkpoint (HF layout), or None.
        lora_rank: LoRA rank on all linear layers (the paper: 32).
        lora_alpha: LoRA scaling numerator.
        lora_dropout: LoRA dropout probability.
        value_head_hidden: hidden sizes of the value MLP (the paper: H -> 512 -> 128 -> 1).
        temperature: sampling temperature during training (the paper: 1.0).
        eval_temperature: sampling temperature during evaluation (the paper: 0.6).
        dtype: parameter dtype of the frozen backbone.
        finetune: ``"lora"`` (the paper: adapters on all linear layers) or ``"full"`` (every
            weight; sensible for the randomly initialised tiny model, whose frozen random
            ``lm_head`` LoRA cannot adapt).
        init_from: a saved policy (``<run_dir>/policy`` of an earlier run, e.g. the SFT warm-up)
            to start from, or None.
        gradient_checkpointing: recompute activations in the backward (LLM and ViTs) to save
            memory at the cost of a second forward; off by default.
        freeze_vision: keep the vision towers and the projector at their starting weights: the
            image features are computed without gradient and their parameters are left out of
            the optimizer (they are still saved with the policy). E.g. RL after SFT that must
            not undo the perception the warm-up learned; also saves their backward.
        freeze_token_embedding: keep the language model's input token embedding at its starting
            weights (left out of the optimizer, still saved). Under ``finetune=full`` a small
            model's 32k-row embedding is most of its weights while a prompt uses a few rows;
            the scripts' SFT of ``docs/results/maniskill-cpu`` froze it. LoRA never trains it.
        arch: overrides of the random-init presets' sizes (``tiny`` / ``small``), fields of
            :class:`~vla_torchrl.modules.config.OpenVLAConfig`, e.g. ``model.arch.image_size=96``
            or ``model.arch.llm_num_layers=6``; checked when the config is validated.
    """

    name: Literal["openvla", "tiny", "small"] = "openvla"
    checkpoint: str | None = None
    finetune: Literal["lora", "full"] = "lora"
    init_from: str | None = None
    lora_rank: int = 32
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    value_head_hidden: list[int] = field(default_factory=lambda: [512, 128])
    temperature: float = 1.0
    eval_temperature: float = 0.6
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    gradient_checkpointing: bool = False
    freeze_vision: bool = False
    freeze_token_embedding: bool = False
    arch: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(
            self.name in ("openvla", "tiny", "small"),
            f"model.name={self.name!r} is unknown; use 'openvla', 'tiny' or 'small'",
        )
        _check(
            isinstance(self.arch, Mapping),
            f"model.arch={self.arch!r} must be a mapping of OpenVLAConfig fields, e.g. "
            "model.arch.image_size=96",
        )
        self.arch = {k: v for k, v in self.arch.items() if v is not None}  # null: the preset's
        if self.arch:
            _check(
                self.name in ("tiny", "small") and not self.checkpoint,
                f"model.arch={dict(self.arch)} resizes a random-init model; it applies to "
                "model=tiny or model=small without model.checkpoint (a checkpoint's sizes are "
                "its own)",
            )
            self.arch = dict(self.arch)
            from vla_torchrl.modules.config import OpenVLAConfig

            known = {f.name for f in dataclasses.fields(OpenVLAConfig)} - {"norm_stats"}
            unknown = sorted(set(self.arch) - known)
            _check(not unknown, f"model.arch: unknown field(s) {unknown}; known: {sorted(known)}")
            try:
                preset = OpenVLAConfig.small if self.name == "small" else OpenVLAConfig.tiny
                preset(**self.arch)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"model.arch={self.arch}: {err}") from err
        _check(
            isinstance(self.lora_rank, int) and self.lora_rank >= 1,
            f"model.lora_rank={self.lora_rank!r} must be an integer >= 1 (the LoRA "
            "adapters' rank); the paper uses 32",
        )
        _positive("model.lora_alpha", self.lora_alpha, "LoRA scales updates by alpha/rank")
        _check(
            0.0 <= self.lora_dropout < 1.0, f"model.lora_dropout={self.lora_dropout} not in [0, 1)"
        )
        for name in ("temperature", "eval_temperature"):
            _positive(
                f"model.{name}",
                getattr(self, name),
                "logits are divided by it; use 1.0 for training, 0.6 for evaluation as the paper",
            )
        _check(
            all(isinstance(h, int) and h >= 1 for h in self.value_head_hidden),
            f"model.value_head_hidden={self.value_head_hidden!r} must list positive integers",
        )
        _check(
            self.dtype in ("float32", "bfloat16", "float16"),
            f"model.dtype={self.dtype!r} is unknown; use float32, bfloat16 or float16",
        )
        _check(
            self.finetune in ("lora", "full"),
            f"model.finetune={self.finetune!r} is unknown; use 'lora' or 'full'",
        )
        _check(
            isinstance(self.freeze_vision, bool),
            f"model.freeze_vision={self.freeze_vision!r} must be true or false",
        )
        _check(
            isinstance(self.freeze_token_embedding, bool),
            f"model.freeze_token_embedding={self.freeze_token_embedding!r} must be true or false",
        )
        _check(
            len(self.value_head_hidden) == 2,
            f"model.value_head_hidden={self.value_head_hidden!r} must have two sizes "
            "(the paper's head is H -> 512 -> 128 -> 1)",
        )


@dataclass
class AlgoConfig:
    """Fine-tuning algorithm and its loss/advantage settings.

    Args:
        name: one of ``ALGORITHMS``: ``sft``, ``ppo``, ``ppo-orz`` (PPO with gamma = lambda = 1,
            Sec. 4.1), ``grpo``, ``grpo-s`` (groups start from the same state), ``tpo``
            (trajectory preferences, DPO-style).
        critic: the value function: ``none`` or a shared-backbone head reading h^0 (the paper's
            choice), h^n, their concatenation, or a separate backbone (Fig. 4).
        clip_epsilon: PPO/GRPO ratio clip (0.2).
        value_clip: PPO value clip (0.2); None disables it.
        huber_delta: Huber value-loss delta (10).
        gamma, lmbda: discount and GAE lambda (0.99, 0.95).
        epochs: passes over each rollout (the paper: 1, Sec. 4.2).
        normalize_advantage: normalise advantages over the batch.
        entropy_coef, value_coef: loss weights.
        group_size: GRPO group size (envs per group); must divide env.num_envs.
        reference: the frozen reference policy: ``none`` or ``initial`` (adapters disabled).
        kl_coef: weight of a KL penalty to the reference (needs ``reference``).
        beta: TPO/DPO temperature.
        grpo_mode: GRPO advantages: ``"process"`` (Eq. 3-4, only non-zero rewards normalised) or
            ``"whole"`` (Eq. 5-6, every reward).
        demos: SFT only: a demonstration set written by ``vla-torchrl-collect`` (a memory-mapped
            TensorDict), or a list of them (concatenated, e.g. one per collection seed); None
            on the toy backend generates ``demo_episodes`` oracle episodes.
        demo_episodes: SFT only: how many oracle episodes to generate when ``demos`` is None.
        norm_stats: SFT only: ``"demos"`` derives the action statistics (q01/q99 per dim, mask)
            from the demonstrations and stores them as the policy's ``norm_stats[unnorm_key]``,
            as OpenVLA's fine-tuning does; ``"model"`` keeps the model's own (a checkpoint's).
        unnorm_key: SFT only: the ``norm_stats`` entry the derived statistics are stored under.
        augment: SFT only: random shift (4 px) + brightness / contrast jitter of the frames.
        val_fraction: SFT only: fraction of the demonstration episodes held out; their loss is
            logged (``eval/sft_loss``) at every evaluation; 0 holds out none.
        eval_every_epochs: SFT only: evaluate in the simulator (``collector.eval_episodes`` fixed
            episodes of ``env``) every this many epochs and at the end, writing ``policy-last/``
            and ``policy-best/``; 0 never.
        max_minutes: SFT only: stop after this many minutes of training (the last policy and,
            with in-simulator evaluation, the best one are written); None: ``epochs`` only.
        critic_warmup: rollout algorithms with a critic: the first this many iterations train
            the value head only (advantages zeroed, every other optimizer group at lr 0), so that
            a critic new to the policy (e.g. PPO after SFT) does not steer it with noise; 0: off.
        critic_trains_backbone: a shared critic's value loss also trains the backbone it reads
            (the paper's choice, True); False: the head reads h^0 detached, so only the
            policy loss moves the policy (with small rollouts, a value loss that Adam turns
            into full-size backbone steps can drift the policy).
        loss: a custom loss in place of the algorithm's own (every algorithm but tpo):
            ``{_target_: my_pkg.MyLoss, <its keyword arguments>}``, built with Hydra's
            ``instantiate(loss, evaluator, algo=<this AlgoConfig>)``; the advantages stay the
            algorithm's (GAE for ppo, group-relative for grpo). ``_target_: null`` (default):
            the algorithm's loss. On the command line: ``algo.loss._target_=my_pkg.MyLoss
            +algo.loss.my_arg=1``.
    """

    name: Algorithm = "ppo"
    grpo_mode: Literal["process", "whole"] = "process"
    demos: str | list[str] | None = None
    demo_episodes: int = 64
    critic: CriticKind = "shared_h0"
    clip_epsilon: float = 0.2
    value_clip: float | None = 0.2
    huber_delta: float = 10.0
    gamma: float = 0.99
    lmbda: float = 0.95
    epochs: int = 1
    normalize_advantage: bool = True
    entropy_coef: float = 0.0
    value_coef: float = 0.5
    group_size: int = 1
    reference: Literal["none", "initial"] = "none"
    kl_coef: float = 0.0
    beta: float = 0.1
    norm_stats: Literal["demos", "model"] = "demos"
    unnorm_key: str = "demos"
    augment: bool = False
    val_fraction: float = 0.0
    max_minutes: float | None = None
    eval_every_epochs: int = 0
    critic_warmup: int = 0
    critic_trains_backbone: bool = True
    loss: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_loss()
        _check(
            self.norm_stats in ("demos", "model"),
            f"algo.norm_stats={self.norm_stats!r} is unknown; use 'demos' (derive q01/q99 from "
            "the demonstrations, as OpenVLA's fine-tuning) or 'model' (keep the model's own)",
        )
        _check(
            0.0 <= self.val_fraction < 1.0,
            f"algo.val_fraction={self.val_fraction} must lie in [0, 1) (the share of "
            "demonstration episodes held out)",
        )
        _check(
            isinstance(self.eval_every_epochs, int) and self.eval_every_epochs >= 0,
            f"algo.eval_every_epochs={self.eval_every_epochs!r} must be an integer >= 0",
        )
        _check(
            isinstance(self.critic_warmup, int) and self.critic_warmup >= 0,
            f"algo.critic_warmup={self.critic_warmup!r} must be an integer >= 0 (the number of "
            "first iterations that train the value head only); 0 disables it",
        )
        _check(
            self.critic_warmup == 0 or self.critic != "none",
            f"algo.critic_warmup={self.critic_warmup} warms up a critic, but algo.critic=none; "
            "drop algo.critic_warmup or choose a critic (e.g. algo.critic=shared_h0)",
        )
        _check(
            isinstance(self.critic_trains_backbone, bool),
            f"algo.critic_trains_backbone={self.critic_trains_backbone!r} must be true or false",
        )
        _check(
            self.critic_trains_backbone or self.critic.startswith("shared"),
            f"algo.critic_trains_backbone=false detaches a shared critic's input, but "
            f"algo.critic={self.critic}; use a shared critic (e.g. shared_h0) or drop it",
        )
        _check(
            self.max_minutes is None or self.max_minutes > 0,
            f"algo.max_minutes={self.max_minutes} must be > 0 (a time budget) or null",
        )
        _check(
            self.name in ALGORITHMS,
            f"algo.name={self.name!r} is not a known algorithm; choose one of "
            f"{', '.join(ALGORITHMS)} (e.g. algo=ppo on the command line)",
        )
        kinds = typing.get_args(CriticKind)
        _check(
            self.critic in kinds,
            f"algo.critic={self.critic!r} is unknown; use one of {', '.join(kinds)}",
        )
        _positive(
            "algo.clip_epsilon",
            self.clip_epsilon,
            "PPO clips the ratio to [1-eps, 1+eps]; the paper uses 0.2",
        )
        if self.value_clip is not None:
            _positive(
                "algo.value_clip",
                self.value_clip,
                "the value update is clipped to +-value_clip; use null to disable, the paper uses 0.2",
            )
        _positive("algo.huber_delta", self.huber_delta, "Huber loss threshold; the paper uses 10")
        _unit("algo.gamma", self.gamma, "a discount factor; the paper uses 0.99, PPO-ORZ 1.0")
        _unit("algo.lmbda", self.lmbda, "the GAE lambda; the paper uses 0.95, PPO-ORZ 1.0")
        _check(
            isinstance(self.epochs, int) and self.epochs >= 1,
            f"algo.epochs={self.epochs!r} must be an integer >= 1; the paper uses 1 (Sec. 4.2)",
        )
        for name in ("entropy_coef", "value_coef", "kl_coef"):
            value = getattr(self, name)
            _check(value >= 0, f"algo.{name}={value} must be >= 0 (a loss weight)")
        _positive("algo.beta", self.beta, "the preference-loss temperature")
        _check(
            isinstance(self.group_size, int) and self.group_size >= 1,
            f"algo.group_size={self.group_size!r} must be an integer >= 1",
        )
        _check(
            self.reference in ("none", "initial"),
            f"algo.reference={self.reference!r} is unknown; use none or initial "
            "(the initial policy: LoRA adapters disabled)",
        )
        if self.name == "ppo-orz":
            _check(
                self.gamma == 1.0 and self.lmbda == 1.0,
                f"algo.name=ppo-orz disables GAE (gamma = lambda = 1, Sec. 4.1) but got "
                f"gamma={self.gamma}, lmbda={self.lmbda}; drop those overrides or use algo=ppo",
            )
        if self.name in ("ppo", "ppo-orz"):
            _check(
                self.critic != "none",
                f"algo.name={self.name} needs a critic for GAE but algo.critic=none; "
                "set algo.critic=shared_h0 (the paper's choice) or use algo=grpo",
            )
        if self.name in ("grpo", "grpo-s"):
            _check(
                self.critic == "none",
                f"algo.name={self.name} estimates its baseline from the group, not a critic, "
                f"but algo.critic={self.critic}; set algo.critic=none or use algo=ppo",
            )
        if self.name in ("sft", "tpo"):
            _check(
                self.critic == "none",
                f"algo.name={self.name} trains no value function but algo.critic="
                f"{self.critic}; set algo.critic=none",
            )
        if self.name == "tpo":
            _check(
                self.reference != "none",
                "algo.name=tpo compares the policy with a frozen reference (DPO-style) but "
                "algo.reference=none; set algo.reference=initial",
            )
        if self.kl_coef > 0:
            _check(
                self.name not in ("sft", "tpo"),
                f"algo.kl_coef={self.kl_coef} is not used by algo.name={self.name} (only ppo, "
                "ppo-orz, grpo and grpo-s add a KL term; tpo's closeness to the reference is "
                "algo.beta); set algo.kl_coef=0",
            )
            _check(
                self.reference != "none",
                f"algo.kl_coef={self.kl_coef} penalises KL to a reference policy but "
                "algo.reference=none; set algo.reference=initial or kl_coef=0",
            )

    @property
    def loss_target(self) -> str | None:
        """The custom loss's import path (``algo.loss._target_``), or None for the stock loss."""
        return self.loss.get("_target_") if self.loss else None

    def _check_loss(self) -> None:
        _check(
            isinstance(self.loss, Mapping),
            f"algo.loss={self.loss!r} must be a mapping, e.g. algo.loss._target_=my_pkg.MyLoss",
        )
        self.loss = dict(self.loss)
        target = self.loss.get("_target_")
        if target is None:
            extra = sorted(k for k in self.loss if k != "_target_")
            _check(
                not extra,
                f"algo.loss has arguments {extra} but no algo.loss._target_; name the loss "
                "class, e.g. algo.loss._target_=my_pkg.MyLoss",
            )
            return
        _check(
            isinstance(target, str) and "." in target and " " not in target,
            f"algo.loss._target_={target!r} must be an import path 'package.module.Class'",
        )
        _check(
            self.name != "tpo",
            f"algo.loss._target_={target} replaces the loss of a per-step algorithm (ppo, "
            f"ppo-orz, grpo, grpo-s, sft), not algo.name={self.name} (trajectory pairs)",
        )

    @property
    def uses_critic(self) -> bool:
        """Whether the algorithm trains a value function."""
        return self.critic != "none"


@dataclass
class CollectorConfig:
    """Rollout collection.

    Args:
        steps_per_env: environment steps per env and rollout (the paper: 80, one episode).
        total_env_steps: training budget in environment steps (all envs together).
        eval_every: environment steps between evaluations (0: never).
        eval_episodes: episodes per evaluation.
        eval_num_envs: env workers of the periodic evaluation (``null``: ``env.num_envs``; at
            most ``eval_episodes`` either way). Its ``ParallelEnv`` stays open beside the
            training env's, so both sets of workers are alive at once: on ManiSkill each holds
            ~1.5 GB, and 8 training + 8 evaluation workers exceed a 24 GB machine (issue 14).
        eval_env: where the periodic evaluation runs: ``own`` (an env of its own, built on
            first use) or ``training`` (the training env, between rollouts: no second set of
            workers, so the memory goes to training workers). ``training`` needs episodes
            that end on success (``until_done``), no same-start groups (``grpo-s``), and
            ``eval_num_envs`` unset or ``env.num_envs``; on a task without per-episode
            perturbations it plays the same episodes as ``own``.
        env_groups: split the ``env.num_envs`` scenes into this many groups (ManiSkill on the
            CPU: one ``ParallelEnv`` each) and step them in turn, so the policy acts on one
            group while the others step
            (:class:`~vla_torchrl.training.overlapped_collector.OverlappedCollector`); each
            scene plays the episodes it plays with 1 (TorchRL's ``Collector``, the default).
            Must divide ``env.num_envs``; needs ``eval_env=own``.
        episodes: how episodes fill a rollout (:func:`episode_mode`):

            * ``fixed``: success is recorded but does not end an episode, so every episode
              lasts ``env.max_episode_steps`` and a rollout holds ``steps_per_env /
              max_episode_steps`` whole episodes per env (one in the paper: 80 of 80 steps, as
              the reference run); ``steps_per_env`` must be a multiple of the episode length;
            * ``until_done``: an episode ends at its first success (terminated) or at the step
              limit, the env resets inside the rollout, and a row ends with a fragment the
              rollout's end cuts off (PPO bootstraps it with V(s_T); GRPO and TPO leave it out);
            * ``auto`` (default): ``fixed`` for GRPO, GRPO(s) and TPO, whose groups and pairs
              compare whole trajectories (paper Sec. 4.1: "trajectories collected from all
              parallel environments for one task episode"), ``until_done`` for PPO / PPO-ORZ.
    """

    steps_per_env: int = 80
    total_env_steps: int = 2_000_000
    eval_every: int = 102_400
    eval_episodes: int = 64
    eval_num_envs: int | None = None
    eval_env: Literal["own", "training"] = "own"
    env_groups: int = 1
    episodes: EpisodeMode = "auto"

    def __post_init__(self) -> None:
        modes = typing.get_args(EpisodeMode)
        _check(
            self.episodes in modes,
            f"collector.episodes={self.episodes!r} is unknown; use one of {', '.join(modes)} "
            "(fixed: one fixed-length episode per env per rollout; until_done: episodes end on "
            "success; auto: fixed for grpo / grpo-s / tpo)",
        )
        for name in ("steps_per_env", "total_env_steps", "eval_episodes", "env_groups"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and value >= 1, f"collector.{name}={value!r} must be >= 1"
            )
        _check(self.eval_every >= 0, f"collector.eval_every={self.eval_every} must be >= 0")
        _check(
            self.eval_num_envs is None
            or (isinstance(self.eval_num_envs, int) and self.eval_num_envs >= 1),
            f"collector.eval_num_envs={self.eval_num_envs!r} must be >= 1, or null for "
            "env.num_envs",
        )
        _check(
            self.eval_env in ("own", "training"),
            f"collector.eval_env={self.eval_env!r} is unknown; use own (an evaluation env of "
            "its own) or training (evaluate on the training env between rollouts)",
        )

    def frames_per_batch(self, env: EnvConfig) -> int:
        """Transitions per rollout: ``env.num_envs * steps_per_env`` (the paper: 5120)."""
        return env.num_envs * self.steps_per_env


@dataclass
class OptimConfig:
    """Optimiser (AdamW) and minibatching.

    Args:
        lr: learning rate of the LoRA adapters (the paper: 1e-4).
        value_lr: learning rate of the value head (the paper: 3e-3).
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        max_grad_norm: gradient clipping norm (the paper: 10); None disables it.
        minibatch_size: transitions per forward/backward (the paper: 8).
        grad_accum_steps: minibatches accumulated per optimiser step (the paper: 20).
        max_consecutive_skips: stop the run after this many updates in a row were skipped for a
            non-finite loss or gradient, or undone by ``verify_steps``.
        verify_steps: after each optimizer step, re-evaluate its first minibatch and undo the
            step when the loss became non-finite (divergence: finite gradients, overflowing
            weights or logits); one extra forward per optimizer step (about 1 in 61
            forward-equivalents at the paper's 20-minibatch accumulation, 1 in 7 at the CPU
            preset's 2) and a copy of the trained parameters and optimizer state.
        autocast: ``"bf16"`` runs the loss forward under ``torch.autocast(dtype=bfloat16)``
            (GPUs with bf16; on the CPU it works but is slow), ``"none"`` (default) does not.
        lr_schedule: SFT only: ``"constant"`` or ``"cosine"`` (from ``lr`` down to
            ``min_lr_ratio * lr`` over the run's optimizer steps), after ``warmup_steps`` of linear
            warm-up.

    In a data-parallel run, ``minibatch_size`` and ``grad_accum_steps`` are per rank: one
    optimizer step covers ``minibatch_size x grad_accum_steps x world_size`` transitions.
    """

    lr: float = 1e-4
    value_lr: float = 3e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    max_grad_norm: float | None = 10.0
    minibatch_size: int = 8
    grad_accum_steps: int = 20
    max_consecutive_skips: int = 5
    verify_steps: bool = True
    autocast: Literal["none", "bf16"] = "none"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        _check(
            isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
            f"optim.warmup_steps={self.warmup_steps!r} must be an integer >= 0",
        )
        _check(
            0.0 <= self.min_lr_ratio <= 1.0,
            f"optim.min_lr_ratio={self.min_lr_ratio} must lie in [0, 1] (the cosine schedule's "
            "floor as a share of optim.lr)",
        )
        hint = "a learning rate; the paper uses 1e-4 for LoRA and 3e-3 for the value head"
        _positive("optim.lr", self.lr, hint)
        _positive("optim.value_lr", self.value_lr, hint)
        _check(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay} must be >= 0")
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"optim.betas={self.betas!r} must be two numbers in [0, 1)",
        )
        if self.max_grad_norm is not None:
            _positive(
                "optim.max_grad_norm",
                self.max_grad_norm,
                "gradient clipping norm; use null to disable, the paper uses 10",
            )
        for name in ("minibatch_size", "grad_accum_steps"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"optim.{name}={value!r} must be >= 1")
        _check(
            self.autocast in ("none", "bf16"),
            f"optim.autocast={self.autocast!r} is unknown; use none or bf16",
        )
        _check(
            isinstance(self.max_consecutive_skips, int)
            and not isinstance(self.max_consecutive_skips, bool)
            and self.max_consecutive_skips >= 1,
            f"optim.max_consecutive_skips={self.max_consecutive_skips!r} must be an integer >= 1 "
            "(updates skipped in a row for a non-finite loss, gradient or logits before the run "
            "stops; default 5)",
        )

    @property
    def transitions_per_update(self) -> int:
        """Transitions per optimiser step: ``minibatch_size * grad_accum_steps``."""
        return self.minibatch_size * self.grad_accum_steps


@dataclass
class LoggerConfig:
    """Metric logging (JSONL always; TensorBoard and wandb optional).

    Args:
        tensorboard: also write TensorBoard event files.
        wandb: ``off``, ``offline`` (default: files only, never the network) or ``online``.
        project: wandb project name.
        progress_bar: show a tqdm bar with ETA.
        log_every: environment steps between training log records (0: every rollout).
    """

    tensorboard: bool = True
    wandb: Literal["off", "offline", "online"] = "offline"
    project: str = "vla-torchrl"
    progress_bar: bool = True
    log_every: int = 0

    def __post_init__(self) -> None:
        _check(
            self.wandb in ("off", "offline", "online"),
            f"logger.wandb={self.wandb!r} is unknown; use off, offline or online",
        )
        _check(self.log_every >= 0, f"logger.log_every={self.log_every} must be >= 0")


@dataclass
class DistConfig:
    """Data-parallel training under ``torchrun`` (ignored in a single process).

    Each rank runs ``env.num_envs`` envs of its own (distinct seeds) and a policy replica;
    ``collector.total_env_steps`` counts the steps of all ranks together.

    Args:
        strategy: ``"ddp"``: every rank holds the whole model, gradients of the trainables are
            averaged over ranks once per optimizer step (LoRA or full fine-tuning);
            ``"fsdp2"``: the LLM's decoder layers and the ViTs' blocks are sharded over the
            ranks with FSDP2 (``fully_shard``), for full fine-tuning of models that do not fit
            one GPU; needs CUDA.
        backend: process-group backend: ``"auto"`` (``nccl`` on GPUs, ``gloo`` on the CPU),
            ``"nccl"`` or ``"gloo"``.
        timeout_s: collective timeout in seconds (a rank that waits longer fails the run).
    """

    strategy: Literal["ddp", "fsdp2"] = "ddp"
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        _check(
            self.strategy in ("ddp", "fsdp2"),
            f"dist.strategy={self.strategy!r} is unknown; use ddp (replicated model, averaged "
            "gradients) or fsdp2 (sharded model, needs CUDA)",
        )
        _check(
            self.backend in ("auto", "nccl", "gloo"),
            f"dist.backend={self.backend!r} is unknown; use auto, nccl (GPUs) or gloo (CPU)",
        )
        _positive("dist.timeout_s", self.timeout_s, "seconds a collective may wait")


@dataclass
class TrainConfig:
    """Top-level training config: the groups plus run-wide settings.

    Args:
        seed: seed of every RNG (``seed_everything``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        run_dir: where checkpoints, logs and reports go.
        resume: ``true``: continue from the newest checkpoint in ``run_dir`` that verifies (a
            damaged newer one is moved aside with a log line; when none verifies the run stops
            and says so); ``false``: refuse a ``run_dir`` that already holds a run;
            ``from_scratch``: start at step 0, moving the old checkpoints and metric log aside
            to ``run_dir/discarded-<time>/``; an integer N: continue from the checkpoint of
            step N (later ones are moved aside the same way).
        checkpoint_every: environment steps between checkpoints (0: only at the end).
        keep_last: complete checkpoints kept on disk.
        dist: data-parallel settings (used when launched with ``torchrun``).
        assets: ``auto`` (default): a missing real asset (WidowX-250S, RL4VLA scenes, Llama-2
            tokenizer) falls back to the built-in stand-in with a log line; ``required``: it
            is an error instead (checked before anything is built).
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    seed: int = 0
    device: str = "auto"
    run_dir: str = "runs/default"
    resume: bool | int | Literal["from_scratch"] = True
    checkpoint_every: int = 102_400
    keep_last: int = 3
    assets: Literal["auto", "required"] = "auto"

    def __post_init__(self) -> None:
        _check_assets(self.assets)
        _check(
            isinstance(self.seed, int) and self.seed >= 0,
            f"seed={self.seed!r} must be an integer >= 0",
        )
        _check(self.checkpoint_every >= 0, f"checkpoint_every={self.checkpoint_every} must be >= 0")
        _check(self.keep_last >= 1, f"keep_last={self.keep_last} must be >= 1")
        _check(
            isinstance(self.resume, bool)
            or self.resume == "from_scratch"
            or (isinstance(self.resume, int) and self.resume >= 0),
            f"resume={self.resume!r} is not a resume mode; use true (the newest checkpoint that "
            "verifies), false (refuse an existing run), from_scratch (restart at step 0, old "
            "files moved aside) or a step N >= 0 (the checkpoint of that step)",
        )


def _check_assets(value: str) -> None:
    _check(
        value in ("auto", "required"),
        f"assets={value!r} is unknown; use auto (fall back to the built-in stand-ins) or "
        "required (a missing real asset is an error)",
    )


def episode_mode(cfg: TrainConfig) -> Literal["fixed", "until_done"]:
    """The collection mode of ``cfg.collector.episodes``, with ``auto`` resolved by algorithm.

    Examples:
        >>> episode_mode(TrainConfig(algo=AlgoConfig(name="grpo", critic="none")))
        'fixed'
        >>> episode_mode(TrainConfig())  # PPO
        'until_done'
    """
    mode = cfg.collector.episodes
    if mode == "auto":
        return "fixed" if cfg.algo.name in WHOLE_TRAJECTORY_ALGOS else "until_done"
    return mode  # type: ignore[return-value]


def validate(
    cfg: TrainConfig,
    *,
    tasks: Collection[str] | None = None,
    cuda_available: bool | None = None,
) -> TrainConfig:
    """Cross-field and environment checks; run before any expensive work.

    Args:
        cfg: the config (each group has already checked its own values).
        tasks: known task names; default: those registered with :func:`register_task_names`
            (the check is skipped when none are known).
        cuda_available: override CUDA detection (tests); default ``torch.cuda.is_available()``.

    Returns:
        ``cfg`` unchanged.

    Raises:
        ConfigError: naming the value, why it is wrong and what to do.

    Examples:
        >>> cfg = TrainConfig(device="cpu")
        >>> validate(cfg, tasks=["ind", "table"]) is cfg
        True
        >>> validate(TrainConfig(device="cpu"), tasks=["table"])
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.ConfigError: env.task='ind' is not a known task; known tasks: table
    """
    names = set(tasks) if tasks is not None else known_tasks()
    if names is not None:
        _check(
            cfg.env.task in names,
            f"env.task={cfg.env.task!r} is not a known task; known tasks: "
            f"{', '.join(sorted(names))}",
        )
    algo, optim, env = cfg.algo, cfg.optim, cfg.env
    if algo.name != "sft":
        frames = cfg.collector.frames_per_batch(env)
        per_update = optim.transitions_per_update
        _check(
            frames % per_update == 0,
            f"a rollout of env.num_envs x collector.steps_per_env = {env.num_envs} x "
            f"{cfg.collector.steps_per_env} = {frames} transitions is not a multiple of "
            f"optim.minibatch_size x optim.grad_accum_steps = {optim.minibatch_size} x "
            f"{optim.grad_accum_steps} = {per_update}; change one so it divides "
            "(the paper: 64 x 80 = 5120 = 32 x (8 x 20))",
        )
    if algo.name != "sft" and episode_mode(cfg) == "fixed":
        steps, length = cfg.collector.steps_per_env, env.max_episode_steps
        _check(
            steps % length == 0,
            f"collector.episodes={cfg.collector.episodes} collects whole fixed-length episodes "
            f"(for algo={algo.name}), but collector.steps_per_env={steps} is not a multiple of "
            f"env.max_episode_steps={length}; set collector.steps_per_env={length} (one episode "
            "per env per rollout, as the paper) or collector.episodes=until_done",
        )
    if cfg.collector.eval_env == "training":
        _validate_shared_eval_env(cfg)
    if algo.name != "sft" and cfg.collector.env_groups > 1:
        _validate_env_groups(cfg)
    if algo.name in ("grpo", "grpo-s"):
        _check(
            env.num_envs % algo.group_size == 0,
            f"algo.group_size={algo.group_size} does not divide env.num_envs={env.num_envs}; "
            "GRPO splits the parallel envs into equal groups",
        )
    device = str(cfg.device)
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    _validate_dist(cfg, cuda_available=cuda_available)
    if device.startswith("cuda"):
        _check(
            cuda_available,
            f"device={device!r} was requested but this machine has no CUDA device; "
            "use device=cpu (or device=auto), or run on a GPU machine",
        )
    else:
        _check(
            device in ("auto", "cpu"),
            f"device={device!r} is not a device name; use auto, cpu, cuda or cuda:N",
        )
    return cfg


def _validate_shared_eval_env(cfg: TrainConfig) -> None:
    """``collector.eval_env=training``: the training env must be the env an evaluation of its
    own would build (same workers, episodes that end on success, no same-start groups)."""
    col, env, algo = cfg.collector, cfg.env, cfg.algo
    why = "collector.eval_env=training evaluates on the training env"
    _check(algo.name != "sft", f"{why}, but algo=sft has none; use collector.eval_env=own")
    _check(
        episode_mode(cfg) == "until_done",
        f"{why}, whose episodes are fixed-length for algo={algo.name} (collector.episodes="
        f"{col.episodes}); evaluation episodes end on success: use collector.eval_env=own",
    )
    _check(
        algo.name != "grpo-s",
        f"{why}, whose groups of algo.group_size envs replay one start (algo=grpo-s); use "
        "collector.eval_env=own",
    )
    _check(
        col.eval_num_envs in (None, env.num_envs),
        f"{why} (env.num_envs={env.num_envs} workers), but collector.eval_num_envs="
        f"{col.eval_num_envs}; unset it, or use collector.eval_env=own",
    )
    _check(
        col.eval_episodes >= env.num_envs,
        f"{why} (env.num_envs={env.num_envs} workers), but collector.eval_episodes="
        f"{col.eval_episodes} is fewer; raise it to at least {env.num_envs}, or use "
        "collector.eval_env=own",
    )


def _validate_env_groups(cfg: TrainConfig) -> None:
    """``collector.env_groups > 1``: equal groups of ManiSkill scenes, evaluated elsewhere."""
    groups, env, algo = cfg.collector.env_groups, cfg.env, cfg.algo
    why = f"collector.env_groups={groups} steps the envs in groups"
    _check(
        env.backend == "maniskill",
        f"{why} to overlap them with the policy, but the {env.backend} env steps in the "
        "training process: there is nothing to overlap; use collector.env_groups=1",
    )
    _check(
        env.num_envs % groups == 0,
        f"{why} of equal size, but it does not divide env.num_envs={env.num_envs}; use a "
        "divisor (e.g. 2 groups of 4 for 8 envs)",
    )
    _check(
        cfg.collector.eval_env == "own",
        f"{why}; the periodic evaluation needs one env of its own: use collector.eval_env=own "
        "(each ManiSkill worker holds ~1.5-2 GB: set collector.eval_num_envs to fit memory)",
    )
    if algo.name == "grpo-s":
        _check(
            (env.num_envs // groups) % algo.group_size == 0,
            f"{why} of {env.num_envs // groups} envs, which would split algo=grpo-s's "
            f"same-start groups of algo.group_size={algo.group_size}; make each env group hold "
            "whole groups",
        )


def _validate_dist(cfg: TrainConfig, *, cuda_available: bool) -> None:
    dist, device = cfg.dist, str(cfg.device)
    on_gpu = cuda_available and device != "cpu"
    if dist.strategy == "fsdp2":
        _check(
            on_gpu,
            f"dist.strategy=fsdp2 shards the model over GPUs but device={device!r} and CUDA is "
            f"{'available' if cuda_available else 'not available'}; use dist.strategy=ddp on "
            "the CPU, or run on GPUs with device=auto",
        )
        _check(
            cfg.model.finetune == "full",
            "dist.strategy=fsdp2 is for full fine-tuning of a model that does not fit one GPU, "
            "but model.finetune=lora (LoRA trains ~1% of the weights: the replicated model "
            "fits); use dist.strategy=ddp, or model.finetune=full",
        )
    if dist.backend == "nccl":
        _check(
            on_gpu,
            f"dist.backend=nccl needs GPUs but device={device!r} and CUDA is "
            f"{'available' if cuda_available else 'not available'}; use dist.backend=gloo "
            "(or auto) on the CPU",
        )


# --------------------------------------------------------------------------- DictConfig -> dataclass
