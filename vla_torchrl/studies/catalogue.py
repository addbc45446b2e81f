"""The paper's studies as named experiments: which runs each one is made of, at three scales.

A study is a set of ``vla-torchrl-train`` runs that differ in one factor (the *variants*), each
repeated over seeds, plus optional *prerequisite* runs shared by every variant (the SFT warm-up
the paper starts its RL runs from, Sec. 4.2). :mod:`vla_torchrl.recipes.study` runs them and
:mod:`vla_torchrl.studies.curves_report` turns their logs into the study's figure and table.

Scales:

* ``tiny``: 4 toy envs x 4 steps, 2 iterations: checks the machinery in seconds (the tests).
* ``cpu``: the toy env and the tiny random VLA (``train_cpu``), minutes per run on a CPU.
* ``paper``: ManiSkill and the real OpenVLA checkpoint with the paper's settings (``train``;
  FACTS.md: 64 envs x 80 steps, LoRA 32, ...). Pass ``model.checkpoint=DIR`` (and the
  demonstrations with ``demos=DIR``); about 42 h per PPO run on one A100 (paper Sec. 4.2).

Overrides are Hydra overrides of the train configs. ``{run:NAME}`` in an override stands for the
saved policy of the prerequisite run ``NAME``; ``{demos}`` for the ``demos=`` directory.

Examples:
    >>> sorted(STUDIES)[:3]
    ['algorithms', 'coverage', 'critics']
    >>> [v.label for v in STUDIES["epochs"].variants("cpu")]
    ['epoch 1', 'epoch 2', 'epoch 4']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "SCALES",
    "STUDIES",
    "Scale",
    "Study",
    "StudyKind",
    "Variant",
    "base_overrides",
    "config_name",
    "get_study",
]

Scale = Literal["tiny", "cpu", "paper"]
SCALES: tuple[str, ...] = ("tiny", "cpu", "paper")
#: ``curves``: training curves of RL runs; ``sft_eval``: evaluate SFT policies against a factor;
#: ``sft_vs_rl``: evaluate SFT vs RL on the task suite; ``coverage``: states visited.
StudyKind = Literal["curves", "sft_eval", "sft_vs_rl", "coverage"]

# tiny: 4 envs x 4 steps = 16 transitions per iteration, 16 px (as tests/recipes/test_train.py)
_TINY = (
    "env.num_envs=4",
    "collector.steps_per_env=4",
    "env.max_episode_steps=4",
    "env.width=16",
    "env.height=16",
    "optim.minibatch_size=8",
    "optim.grad_accum_steps=1",
    "collector.total_env_steps=32",
    "checkpoint_every=0",
    "model.finetune=full",
    "logger.progress_bar=false",
)
# cpu: the toy env's learning-test task (reach-corner, 6-step episodes, 28 px = the tiny model's
# input), 8 envs x 16 steps per iteration, 3072 env steps (as tests/training/test_learning.py)
_CPU = (
    "env.task=reach-corner",
    "env.width=28",
    "env.height=28",
    "env.num_envs=8",
    "env.max_episode_steps=6",
    "collector.steps_per_env=16",
    "collector.total_env_steps=3072",
    "model.finetune=full",  # the tiny model is random: LoRA on frozen random weights is pointless
    "optim.lr=1e-3",
    "logger.progress_bar=false",
)
_BASE: dict[str, tuple[str, ...]] = {"tiny": _TINY, "cpu": _CPU, "paper": ()}
# the SFT warm-up (Sec. 4.2: 140 demonstrations) at each scale
_WARMUP: dict[str, tuple[str, ...]] = {
    "tiny": ("algo=sft", "algo.epochs=1", "algo.demo_episodes=2"),
    "cpu": ("algo=sft", "algo.epochs=1", "algo.demo_episodes=8"),  # a weak warm-up: RL has room
    "paper": ("algo=sft", "algo.epochs=10", "algo.demos={demos}/warmup-140"),
}
# GRPO groups must divide the number of envs
_GROUP = {"tiny": "algo.group_size=2", "cpu": "algo.group_size=8", "paper": "algo.group_size=8"}
# GRPO / GRPO(s) / TPO collect whole fixed-length episodes (collector.episodes=auto -> fixed), so
# a rollout is a multiple of the episode length: 2 x 6 steps at the cpu scale (16 is none); the
# tiny (4 of 4) and paper (80 of 80) scales already hold one episode per env per rollout
_WHOLE: dict[str, tuple[str, ...]] = {
    "tiny": (),
    "cpu": ("collector.steps_per_env=12",),
    "paper": (),
}


def base_overrides(scale: Scale) -> tuple[str, ...]:
    """Overrides every run of ``scale`` starts from (before the user's and the variant's)."""
    _check_scale(scale)
    return _BASE[scale]


def config_name(scale: Scale) -> str:
    """The Hydra config of ``scale``: ``train_cpu`` (toy env, tiny model) or ``train``."""
    _check_scale(scale)
    return "train" if scale == "paper" else "train_cpu"


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is unknown; use one of {', '.join(SCALES)}")


@dataclass(frozen=True)
class Variant:
    """One setting of the study's factor.

    Args:
        label: the legend entry (as in the paper's figure).
        overrides: Hydra overrides of this setting (applied after the user's).
        value: the factor's value on a numeric x axis (``sft_eval`` studies: number of demos).
    """

    label: str
    overrides: tuple[str, ...]
    value: float | None = None


@dataclass(frozen=True)
class Study:
    """A named study of the paper.

    Args:
        name: the ``vla-torchrl-study`` name.
        figure: the paper's figure/table it reproduces.
        title: one line: what is compared.
        kind: see :data:`StudyKind`.
        variants: ``scale -> variants``.
        prerequisites: ``scale -> {name: overrides}``: runs made once (first seed) before the
            variants; a variant refers to one's policy as ``{run:NAME}``.
        metrics: metrics plotted (``curves``) or evaluated.
        x_axes: ``env_steps`` and/or ``wall_clock`` (one row of panels each).
        notes: caveats printed with the summary.
    """

    name: str
    figure: str
    title: str
    kind: StudyKind
    variants: Callable[[Scale], list[Variant]]
    prerequisites: Callable[[Scale], dict[str, tuple[str, ...]]] = field(default=lambda scale: {})
    metrics: tuple[str, ...] = ("train/episode_return", "train/success")
    x_axes: tuple[str, ...] = ("env_steps",)
    notes: str = ""


def _warmup(scale: Scale) -> dict[str, tuple[str, ...]]:
    return {"warmup": _WARMUP[scale]}


_FROM_WARMUP = "model.init_from={run:warmup}"


def _algorithms(scale: Scale) -> list[Variant]:
    group = _GROUP[scale]
    # cpu (reach-corner): every non-zero reward is the same 1.2, so the process form's Eq. (4)
    # maps them all to 0 (no signal); compare the whole-trajectory form, Eq. (5)-(6), there.
    # The grpo_variants study keeps both modes.
    grpo = (group, "algo.grpo_mode=whole") if scale == "cpu" else (group,)
    whole = _WHOLE[scale]
    return [
        Variant("PPO", ("algo=ppo", _FROM_WARMUP)),
        Variant("PPO-ORZ", ("algo=ppo-orz", _FROM_WARMUP)),
        Variant("GRPO", ("algo=grpo", *grpo, *whole, _FROM_WARMUP)),
        Variant("GRPO(s)", ("algo=grpo-s", *grpo, *whole, _FROM_WARMUP)),
        Variant("DPO (TPO)", ("algo=tpo", *whole, _FROM_WARMUP)),
    ]


def _grpo_variants(scale: Scale) -> list[Variant]:
    group = _GROUP[scale]
    out = [Variant("PPO", ("algo=ppo", _FROM_WARMUP))]
    for algo, name in (("grpo", "GRPO"), ("grpo-s", "GRPO(s)")):
        for mode, eq in (("process", "Eq. 3-4"), ("whole", "Eq. 5-6")):
            out.append(
                Variant(
                    f"{name} {mode} ({eq})",
                    (f"algo={algo}", f"algo.grpo_mode={mode}", group, *_WHOLE[scale], _FROM_WARMUP),
                )
            )
    return out


def _critics(scale: Scale) -> list[Variant]:
    return [
        Variant(label, ("algo=ppo", f"algo.critic={kind}", _FROM_WARMUP))
        for label, kind in (
            ("h^0 (shared)", "shared_h0"),
            ("h^n (shared)", "shared_hn"),
            ("[h^0..h^n] (shared)", "shared_concat"),
            ("separate backbone", "separate"),
        )
    ]


def _warmup_variants(scale: Scale) -> list[Variant]:
    return [
        Variant("warm-up", ("algo=ppo", _FROM_WARMUP)),
        Variant("no warm-up", ("algo=ppo",)),
    ]


def _epochs(scale: Scale) -> list[Variant]:
    return [
        Variant(f"epoch {n}", ("algo=ppo", f"algo.epochs={n}", _FROM_WARMUP)) for n in (1, 2, 4)
    ]


def _temperature(scale: Scale) -> list[Variant]:
    # The paper's text names 1.0 (its choice) and "very large" / "moderate or small" values.
    temps = (0.5, 1.0, 1.5, 2.0)
    return [
        Variant(f"T={t}", ("algo=ppo", f"model.temperature={t}", _FROM_WARMUP), value=t)
        for t in temps
    ]


def _lora_rank(scale: Scale) -> list[Variant]:
    # The paper uses rank 32 and reports lower ranks slightly more efficient (Appx. B.2).
    ranks = (2, 4, 8) if scale != "paper" else (8, 16, 32, 64)
    # No warm-up: a run started from a saved policy keeps that policy's adapters (and rank).
    return [
        Variant(f"rank {r}", ("algo=ppo", "model.finetune=lora", f"model.lora_rank={r}"), r)
        for r in ranks
    ]


def _sft_demos(scale: Scale) -> list[Variant]:
    if scale == "paper":  # Fig. 6: a few hundred to 64k trajectories
        counts = (250, 1000, 4000, 16000, 64000)
        return [
            Variant(f"{n} demos", ("algo=sft", "algo.epochs=10", f"algo.demos={{demos}}/{n}"), n)
            for n in counts
        ]
    counts = (2, 4) if scale == "tiny" else (8, 32, 128)
    epochs = 1 if scale == "tiny" else 4
    return [
        Variant(
            f"{n} demos",
            ("algo=sft", f"algo.epochs={epochs}", f"algo.demo_episodes={n}", "optim.lr=1e-3"),
            n,
        )
        for n in counts
    ]


def _rl_from_sft(scale: Scale) -> list[Variant]:
    return [Variant("RL", ("algo=ppo", "model.init_from={run:sft}"))]


def _sft_baseline(scale: Scale) -> dict[str, tuple[str, ...]]:
    # the SFT baseline of Sec. 5.3 (paper: 16k trajectories); RL starts from it
    if scale == "paper":
        return {"sft": ("algo=sft", "algo.epochs=10", "algo.demos={demos}/16000")}
    return {"sft": _WARMUP[scale]}


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "algorithms",
            "Fig. 3b",
            "PPO vs PPO-ORZ vs GRPO vs GRPO(s) vs DPO (TPO), from the SFT warm-up",
            "curves",
            _algorithms,
            _warmup,
        ),
        Study(
            "grpo_variants",
            "Fig. 10",
            "GRPO advantages: process (Eq. 3-4) vs whole (Eq. 5-6), with/without same-start groups",
            "curves",
            _grpo_variants,
            _warmup,
        ),
        Study(
            "critics",
            "Fig. 4b",
            "PPO critic designs: value head on h^0, h^n, [h^0..h^n], or a separate backbone",
            "curves",
            _critics,
            _warmup,
            notes="Memory: peak resident set of the run (CPU, a proxy) or peak CUDA memory "
            "allocated; speed: mean seconds per PPO update. Paper: separate backbone 35% "
            "slower, 81.3 GB vs 44.4 GB (benchmarks/critic_memory.py measures one update).",
        ),
        Study(
            "warmup",
            "Fig. 5a",
            "PPO from the SFT warm-up vs from the pretrained checkpoint",
            "curves",
            _warmup_variants,
            _warmup,
        ),
        Study(
            "epochs",
            "Fig. 5b/c",
            "PPO epochs per rollout 1/2/4: return vs environment steps and vs wall-clock time",
            "curves",
            _epochs,
            _warmup,
            x_axes=("env_steps", "wall_clock"),
        ),
        Study(
            "temperature",
            "Fig. 11",
            "PPO with different sampling temperatures during training",
            "curves",
            _temperature,
            _warmup,
            notes="The paper's text does not list its temperatures; 0.5-2.0 brackets its 1.0.",
        ),
        Study(
            "lora_rank",
            "Fig. 12",
            "PPO with different LoRA ranks",
            "curves",
            _lora_rank,
            notes="The CPU scales use ranks 2/4/8 of the tiny model with LoRA fine-tuning. The runs "
            "start from the base model, not the warm-up: model.init_from keeps the saved "
            "policy's adapters, so a new rank would be ignored.",
        ),
        Study(
            "sft_demos",
            "Fig. 6a/b",
            "SFT with growing numbers of demonstrations: grasp, continuous grasp, success",
            "sft_eval",
            _sft_demos,
            metrics=("grasped", "continuous_grasp", "success"),
            notes="The toy backend has one task (IND); OOD tasks (obj, table) need ManiSkill.",
        ),
        Study(
            "sft_vs_rl",
            "Fig. 7, Tables 1-3",
            "SFT vs RL (PPO from the SFT policy) on the task suite, with relative drops",
            "sft_vs_rl",
            _rl_from_sft,
            _sft_baseline,
            metrics=("grasped", "continuous_grasp", "success"),
        ),
        Study(
            "coverage",
            "Fig. 8",
            "States visited by the SFT demonstrations vs RL rollouts",
            "coverage",
            _rl_from_sft,
            _sft_baseline,
            notes="Toy env: the dot's (x, y) (its state key), colour = time step. ManiSkill's "
            "state key holds joint positions, not the end-effector pose the paper plots.",
        ),
    )
}


def get_study(name: str) -> Study:
    """The study called ``name``.

    Raises:
        KeyError: naming the known studies.
    """
    try:
        return STUDIES[name]
    except KeyError:
        raise KeyError(
            f"study {name!r} is unknown; known studies: {', '.join(sorted(STUDIES))}"
        ) from None
