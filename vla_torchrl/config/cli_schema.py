"""Typed, validated configs of the command lines other than ``-train`` and ``-collect``.

Every command line of the toolkit takes Hydra overrides (``key=value``) composed from a YAML
preset in ``conf/`` into one of these dataclasses, the way ``vla-torchrl-train`` fills
:class:`~vla_torchrl.config.train_schema.TrainConfig`: unknown keys and wrong types are refused
with the key's full name (:func:`to_cli_config`), each ``__post_init__`` checks its values.

* :class:`EvalConfig` (``conf/eval.yaml``): ``vla-torchrl-eval``;
* :class:`ReportConfig` (``conf/report.yaml``): ``vla-torchrl-report``;
* :class:`StudyConfig` (``conf/study.yaml``): ``vla-torchrl-study``;
* :class:`PlotCurvesConfig` (``conf/plot_curves.yaml``): ``python -m vla_torchrl.recipes.plot_curves``;
* :class:`DemoConfig` (``conf/demo.yaml``): ``python -m vla_torchrl.recipes.demo`` (``make demo``);
* :class:`PretrainVisionConfig` (``conf/pretrain_vision.yaml``): ``vla-torchrl-pretrain-vision``.

Examples:
    >>> cfg = to_cli_config(EvalConfig, {"policies": {"RL": "runs/ppo/policy"},
    ...                                  "env": {"backend": "toy"}, "seeds": [0, 1]})
    >>> cfg.env.backend, cfg.seeds
    ('toy', [0, 1])
    >>> to_cli_config(EvalConfig, {"policies": {"RL": "p"}, "episodes": 0})
    Traceback (most recent call last):
    ...
    vla_torchrl.errors.ConfigError: episodes=0 must be >= 1 (evaluation episodes per task and seed)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from vla_torchrl.config.load import build_config
from vla_torchrl.config.train_schema import EnvConfig, ModelConfig, _check_assets
from vla_torchrl.errors import ConfigError

__all__ = [
    "DemoConfig",
    "EvalConfig",
    "PlotCurvesConfig",
    "PretrainVisionConfig",
    "ReportConfig",
    "StudyConfig",
    "to_cli_config",
]

T = TypeVar("T")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _seeds(name: str, seeds: list[int]) -> None:
    _check(bool(seeds), f"{name}=[] is empty; give at least one seed, e.g. {name}=[0,1,2]")
    _check(all(s >= 0 for s in seeds), f"{name}={seeds} must all be >= 0")
    _check(len(set(seeds)) == len(seeds), f"{name}={seeds} has repeats")


@dataclass
class EvalConfig:
    """What ``vla-torchrl-eval`` evaluates (:func:`~vla_torchrl.evaluation.eval_loop.evaluate`).

    Args:
        policies: label -> saved policy directory: ``'policies={SFT:runs/sft/policy,RL:DIR}'``
            (quoted: the shell expands braces with a comma) or ``policies.SFT=runs/sft/policy``
            per policy; the first is the baseline of the report's paired comparison.
        tasks: tasks of ``env.backend`` (``[]``: all of them).
        seeds: env seeds (the paper: 3).
        episodes: episodes per task and seed.
        env: the env group: ``backend``, ``num_envs``, ``max_episode_steps`` (the paper: 80),
            ``width``, ``height`` (``env=toy`` for the toy backend); ``env.task`` is unused
            (see ``tasks``).
        temperature: sampling temperature (the paper: 0.6).
        greedy: greedy decoding instead of sampling.
        videos: rollout GIFs per task (from the first seed).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        out: output directory (``episodes.jsonl``, ``report/``, ``videos/``).
        assets: ``auto`` (default): a missing real asset (WidowX-250S, RL4VLA scenes, Llama-2
            tokenizer) falls back to the built-in stand-in with a log line; ``required``: it
            is an error instead (checked before anything is built).
        fresh_env: build the env anew for each (policy, task, seed) group (default): a group's
            episodes then do not depend on the policies evaluated before it or on a resume
            (ManiSkill's CPU simulation carries contact state across resets). ``false`` reuses
            one env per (task, seed): ~20 s faster per group, same scenes, but a policy's
            sampled episodes depend on the evaluation order.
    """

    policies: dict[str, str] | None = None
    tasks: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    episodes: int = 16
    env: EnvConfig = field(default_factory=lambda: EnvConfig(num_envs=4))
    temperature: float = 0.6
    greedy: bool = False
    videos: int = 1
    device: str = "cpu"
    out: str = "eval"
    assets: str = "auto"
    fresh_env: bool = True

    def __post_init__(self) -> None:
        _check_assets(self.assets)
        self.policies = dict(self.policies or {})
        _check(
            bool(self.policies),
            "no policy to evaluate; give policies.LABEL=DIR for each, e.g. "
            "policies.SFT=runs/sft/policy policies.RL=runs/ppo/policy",
        )
        for label, path in self.policies.items():
            _check(
                bool(str(label).strip()) and bool(str(path).strip()),
                f"policies.{label}={path!r}: a policy needs a label and a directory",
            )
        _check(self.episodes >= 1, f"episodes={self.episodes} must be >= 1 (evaluation "
               "episodes per task and seed)")  # fmt: skip
        _seeds("seeds", self.seeds)
        _check(
            self.greedy or self.temperature > 0,
            f"temperature={self.temperature} must be > 0 (the paper: 0.6), or set greedy=true",
        )
        _check(self.videos >= 0, f"videos={self.videos} must be >= 0")
        _check(bool(str(self.out).strip()), "out is empty; give an output directory")


@dataclass
class ReportConfig:
    """What ``vla-torchrl-report`` reports (:func:`~vla_torchrl.evaluation.report_writer.write_report`).

    Args:
        results: per-episode results: ``.csv``, ``.jsonl`` or an evaluation's ``episodes.jsonl``;
            or a list of them (policies evaluated at different times on the same episodes,
            :func:`~vla_torchrl.evaluation.results.merge_results`).
        out: output directory.
        policies: column order, e.g. ``[SFT,RL]`` (``[]``: order of appearance); the first is the
            baseline of the paired comparison.
        task_axes: a JSON file ``{task: axis}`` (null: the paper's SUITE axes).
        ind_task: the in-distribution task the relative drops refer to.
        ddof: std over seeds: 0 population (the paper's tables), 1 sample.
        resamples: of the paired bootstrap interval.
        seeds: report only these evaluation seeds (``[]``: all), e.g. the 64 episodes of one
            seed out of a 4-seed evaluation.
        runs: methods over their training runs, ``'runs={SFT:[SFT],RL:[PPO-s0,PPO-s1]}'``:
            adds mean (std) over each method's runs per task and axis (null: none).
    """

    results: str | list[str] = ""
    out: str = ""
    policies: list[str] = field(default_factory=list)
    task_axes: str | None = None
    ind_task: str = "ind"
    ddof: int = 0
    resamples: int = 10_000
    seeds: list[int] = field(default_factory=list)
    runs: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        files = [self.results] if isinstance(self.results, str) else self.results
        _check(
            bool(files) and all(f.strip() for f in files),
            f"results is empty{'' if isinstance(self.results, str) else ' or has an empty entry'}; "
            "give the per-episode results, e.g. results=eval/episodes.jsonl or "
            "results=[a/episodes.jsonl,b/episodes.jsonl]",
        )
        _check(bool(self.out.strip()), "out is empty; give the output directory, e.g. out=report")
        _check(self.ddof in (0, 1), f"ddof={self.ddof} must be 0 (population std) or 1 (sample)")
        _check(self.resamples >= 100, f"resamples={self.resamples} must be >= 100")
        _check(all(x >= 0 for x in self.seeds), f"seeds={self.seeds} must all be >= 0")


Scale = Literal["tiny", "cpu", "paper"]


@dataclass
class StudyConfig:
    """What ``vla-torchrl-study`` runs (:mod:`vla_torchrl.studies.runner`).

    Args:
        name: the study (``vla-torchrl-study list``), or ``list``.
        action: ``run`` (train the missing runs, then plot), ``plot`` (figure and summary from
            the logs again) or ``dry_run`` (print the ``vla-torchrl-train`` commands).
        scale: ``tiny`` (seconds, the tests), ``cpu`` (the toy env) or ``paper``.
        seeds: training seeds (the paper: 2; 3 for the evaluations).
        out: output directory (null: ``studies/<name>-<scale>``).
        demos: the folder of demonstration sets (paper scale).
        plot: write the figure and summary after the runs.
        launcher: ``inprocess`` or ``subprocess`` (a fresh process per run: clean peak memory).
        train: Hydra overrides applied to every training run, given on the command line as
            ``train.KEY=VALUE`` (e.g. ``train.model.checkpoint=/data/openvla-7b``); the variant's
            own overrides come last, so the factor under study always wins.
    """

    name: str = ""
    action: Literal["run", "plot", "dry_run"] = "run"
    scale: Scale = "cpu"
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    out: str | None = None
    demos: str | None = None
    plot: bool = True
    launcher: Literal["inprocess", "subprocess"] = "inprocess"
    train: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check(
            bool(self.name.strip()),
            "name is empty; name a study, e.g. vla-torchrl-study algorithms scale=cpu "
            "(vla-torchrl-study list lists them)",
        )
        for key, allowed in (
            ("action", ("run", "plot", "dry_run")),
            ("scale", ("tiny", "cpu", "paper")),
            ("launcher", ("inprocess", "subprocess")),
        ):
            value = getattr(self, key)
            _check(value in allowed, f"{key}={value!r} is unknown; use one of {', '.join(allowed)}")
        _seeds("seeds", self.seeds)


@dataclass
class PlotCurvesConfig:
    """What ``plot_curves`` draws (:func:`~vla_torchrl.studies.curves.plot_curves`).

    Args:
        runs: run directories; runs whose names differ only by a trailing ``seed<N>`` form one
            curve (mean +- std over seeds).
        groups: named curves, ``{LABEL: [DIR, ...]}``, e.g. ``groups.GRPO=[runs/a,runs/b]``.
        out: output PNG.
        metrics: metrics to plot (``[]``: the defaults, success and return).
        x: ``env_steps`` or ``wall_clock``.
        hlines: reference levels ``{LABEL: VALUE}``, e.g. ``hlines.SFT-16k=0.78``.
        smooth: average each run's last ``smooth`` logged points (trailing) before
            aggregating (1: raw points).
    """

    runs: list[str] = field(default_factory=list)
    groups: dict[str, list[str]] | None = None
    out: str = ""
    metrics: list[str] = field(default_factory=list)
    x: Literal["env_steps", "wall_clock"] = "env_steps"
    hlines: dict[str, float] | None = None
    smooth: int = 1

    def __post_init__(self) -> None:
        self.groups, self.hlines = dict(self.groups or {}), dict(self.hlines or {})
        _check(
            self.smooth >= 1,
            f"smooth={self.smooth} must be >= 1 (the number of logged points each value "
            "averages; 1 plots the raw points)",
        )
        _check(
            bool(self.runs or self.groups),
            "no run to plot; give runs=[DIR,...] and/or groups.LABEL=[DIR,...]",
        )
        _check(bool(self.out.strip()), "out is empty; give the output PNG, e.g. out=fig.png")
        _check(
            self.x in ("env_steps", "wall_clock"),
            f"x={self.x!r} is unknown; use env_steps or wall_clock",
        )
        for label, dirs in self.groups.items():
            _check(
                isinstance(dirs, list) and bool(dirs),
                f"groups.{label}={dirs!r} must be a non-empty list of run directories, e.g. "
                "groups.GRPO=[runs/grpo-seed0,runs/grpo-seed1]",
            )
        for label, value in self.hlines.items():
            _check(
                isinstance(value, int | float) and not isinstance(value, bool),
                f"hlines.{label}={value!r} must be a number, e.g. hlines.SFT-16k=0.78",
            )


@dataclass
class DemoConfig:
    """What ``make demo`` runs (:mod:`vla_torchrl.recipes.demo`).

    Args:
        out: where the runs and the reports go.
        ppo_steps: PPO environment steps.
        maniskill: also evaluate on a few ManiSkill SUITE tasks (builds scenes).
        maniskill_policies: ``{SFT: DIR, RL: DIR}``, two ManiSkill policies the toolkit
            trained at the CPU scale (``env=maniskill_cpu``, e.g. an SFT policy and PPO from
            it): the ManiSkill stage then evaluates these on ``ind`` at that scale, on the same
            held-out episodes for both, instead of the toy-trained policies (which never saw
            the scene). Empty (default): the toy-trained ones.
        maniskill_episodes: held-out ``ind`` episodes for ``maniskill_policies``.
    """

    out: str = "outputs/demo"
    ppo_steps: int = 3072
    maniskill: bool = True
    maniskill_policies: dict[str, str] | None = None
    maniskill_episodes: int = 16

    def __post_init__(self) -> None:
        _check(self.ppo_steps >= 1, f"ppo_steps={self.ppo_steps} must be >= 1")
        _check(bool(self.out.strip()), "out is empty; give an output directory")
        _check(
            self.maniskill_episodes >= 1,
            f"maniskill_episodes={self.maniskill_episodes} must be >= 1",
        )
        self.maniskill_policies = dict(self.maniskill_policies or {})
        if self.maniskill_policies:
            labels = sorted(self.maniskill_policies)
            _check(
                labels == ["RL", "SFT"],
                f"maniskill_policies has labels {labels}; give exactly SFT and RL, e.g. "
                "maniskill_policies.SFT=runs/sft/policy maniskill_policies.RL=runs/ppo/policy",
            )
            _check(
                self.maniskill,
                "maniskill=false skips the ManiSkill stage that evaluates maniskill_policies; "
                "drop one of the two",
            )


@dataclass
class PretrainVisionConfig:
    """What ``vla-torchrl-pretrain-vision`` trains (:mod:`vla_torchrl.training.vision_pretraining`).

    Args:
        demos: demonstration folders collected with ``vla-torchrl-collect privileged=true``.
        scene_frames: folders of further privileged frames that only train (never held out),
            e.g. one reset frame per scene (``vla-torchrl-collect env.max_episode_steps=1
            keep_failures=true filter_idle=false privileged=true``): many more object
            placements than the demos show. The held-out split stays the demos'.
        scene_share: the share of each minibatch drawn from ``scene_frames`` (the rest from the
            demos' training frames); ``None`` draws uniformly over all training frames, so the
            share is the scene frames' share of them (0.46 for 16,000 beside ~19,000 demo
            frames).
        out: output directory (``policy/``, ``heads.pt``, ``checkpoint.pt``, ``log.jsonl``); a
            rerun with the same ``out`` resumes from its checkpoint.
        model: the model whose towers train (the ``model`` group: ``model=small``, with
            ``model.arch.*`` overrides, or ``model.init_from=DIR`` to continue a saved policy).
        steps: optimizer steps; batch_size: frames per step.
        lr, warmup_steps, min_lr_ratio: AdamW learning rate, its linear warm-up and the floor of
            the cosine that follows (a fraction of ``lr``).
        weight_decay, max_grad_norm: AdamW's decay and the global gradient-norm clip.
        shift: largest random translation of a frame (pixels; the keypoint labels move with it).
        jitter: brightness and contrast jitter (fraction; 0 = none).
        position_coef, keypoint_coef, orientation_coef: weights of the three perception terms;
            0 leaves a head out (the position head is always trained and saved: ``heads.pt``
            needs it).
        val_fraction: held-out share of the episodes (their errors are logged in cm).
        eval_every: steps between held-out evaluations (each also writes the outputs).
        log_every: steps between training lines in ``log.jsonl``.
        seed: data split, minibatches and augmentation.
        progress_bar: a progress bar on stderr.
    """

    demos: list[str] = field(default_factory=list)
    scene_frames: list[str] = field(default_factory=list)
    scene_share: float | None = None
    out: str = ""
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(name="small", finetune="full", dtype="float32")
    )
    steps: int = 10000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    shift: int = 4
    jitter: float = 0.1
    position_coef: float = 1.0
    keypoint_coef: float = 1.0
    orientation_coef: float = 1.0
    val_fraction: float = 0.05
    eval_every: int = 1000
    log_every: int = 50
    seed: int = 0
    progress_bar: bool = True

    def __post_init__(self) -> None:
        _check(
            bool(self.demos),
            "demos=[] is empty; give the folders of vla-torchrl-collect privileged=true, e.g. "
            "'demos=[data/demos-s1,data/demos-s2]'",
        )
        _check(bool(self.out.strip()), "out is empty; give an output directory, e.g. out=runs/pv")
        for key in ("steps", "batch_size", "eval_every", "log_every"):
            _check(getattr(self, key) >= 1, f"{key}={getattr(self, key)} must be >= 1")
        _check(self.lr > 0, f"lr={self.lr} must be > 0")
        _check(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps} must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        _check(self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0")
        _check(self.max_grad_norm > 0, f"max_grad_norm={self.max_grad_norm} must be > 0")
        _check(self.shift >= 0, f"shift={self.shift} must be >= 0 (pixels)")
        _check(0 <= self.jitter < 1, f"jitter={self.jitter} must be in [0, 1)")
        coefs = {k: getattr(self, f"{k}_coef") for k in ("position", "keypoint", "orientation")}
        for name, value in coefs.items():
            _check(value >= 0, f"{name}_coef={value} must be >= 0")
        _check(any(v > 0 for v in coefs.values()), "every *_coef is 0: nothing would train")
        _check(
            0 <= self.val_fraction < 1,
            f"val_fraction={self.val_fraction} must be in [0, 1) (a share of the episodes)",
        )
        _check(
            not self.model.freeze_vision,
            "model.freeze_vision=true freezes the towers this command trains; drop it",
        )
        if self.scene_share is not None:
            _check(
                0 <= self.scene_share <= 1,
                f"scene_share={self.scene_share} must be in [0, 1] (a share of each minibatch)",
            )
            _check(
                bool(self.scene_frames),
                f"scene_share={self.scene_share} needs scene_frames=[...]; give the folders or "
                "drop scene_share",
            )


def to_cli_config(cls: type[T], cfg: Any) -> T:
    """Build the config ``cls`` from a Hydra ``DictConfig`` (or a plain dict).

    Keys missing in ``cfg`` take the dataclass defaults; unknown keys and wrong types raise
    :class:`~vla_torchrl.errors.ConfigError` naming the full key; ``hydra`` is ignored.

    Examples:
        >>> to_cli_config(DemoConfig, {"ppo_steps": 64}).ppo_steps
        64
        >>> to_cli_config(DemoConfig, {"ppo_step": 64})
        Traceback (most recent call last):
        ...
        vla_torchrl.errors.ConfigError: unknown config key(s) ppo_step in the top level; known keys: maniskill, maniskill_episodes, maniskill_policies, out, ppo_steps
    """
    return build_config(cls, cfg)
