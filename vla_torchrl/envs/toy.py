"""A toy VLA task, cheap enough for RL tests on a CPU: move a dot onto the named coloured square.

It writes the same keys as the ManiSkill envs (``vla_torchrl.keys``) so that actors, collectors,
losses and the OOD transforms can be tested end to end in seconds.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Sequence

import numpy as np
import torch
from tensordict import NonTensorStack, TensorDict, TensorDictBase
from torchrl.envs import EnvBase

from vla_torchrl.envs.specs import set_vla_specs
from vla_torchrl.keys import (
    ACTION_KEY,
    CONTINUOUS_GRASP_KEY,
    DONE_KEY,
    EPISODE_ID_KEY,
    FOREGROUND_MASK_KEY,
    GRASPED_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    REWARD_KEY,
    STATE_KEY,
    SUCCESS_KEY,
    TERMINATED_KEY,
    TRUNCATED_KEY,
    next_key,
)

__all__ = [
    "COLOURS",
    "TOY_TASKS",
    "ToyReachConfig",
    "ToyReachEnv",
    "make_toy_env",
    "ORACLE_SEED_OFFSET",
    "toy_oracle_demos",
    "toy_oracle_steps",
]

#: Square colours (name -> RGB); the instruction names the target by colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 205, 40),
}
_BACKGROUND = (40, 40, 40)
_AGENT = (255, 255, 255)
# Potential of the paper's reward (Sec. 5.1 / FACTS): 0.1 grasped, +0.1 held, +1.0 success.
_POTENTIAL = (0.1, 0.1, 1.0)
_MAX_TRIES = 256

#: Named toy tasks: :class:`ToyReachConfig` options on top of the defaults.
#:
#: - ``ind``: the default task (two coloured squares, the instruction names the target, hold
#:   then release). A random policy succeeds ~10 %; learning it from pixels needs far more samples
#:   than a CPU test affords (see :class:`ToyReachEnv`).
#: - ``reach-corner``: the learning-test task. One large square in the top-right corner region,
#:   the dot starts in the bottom-left one (both jittered), success = reaching the square. With
#:   6-step episodes (the learning tests) a uniformly random policy succeeds 14 %; moving up-right succeeds always, so the best
#:   action depends little on the observation: the task checks that an objective's gradients move
#:   the 7 x 256-way token distribution toward rewarded actions end to end (rollout, log-probs,
#:   advantages, update), not perception.
TOY_TASKS: dict[str, dict] = {
    "ind": {},
    "reach-corner": {
        "num_targets": 1,
        "target_half_size": 0.5,
        "use_gripper": False,
        "hold_steps": 1,
        "target_box": (0.3, 0.3, 0.5, 0.5),
        "start_box": (-0.6, -0.6, -0.3, -0.3),
    },
}


@dataclasses.dataclass(frozen=True)
class ToyReachConfig:
    """Options of :class:`ToyReachEnv` (the defaults give a 5-15 % random-policy success rate).

    Args:
        image_size: side of the square RGB frame, in pixels.
        num_targets: coloured squares on the table (one target, the others distractors), at
            most ``len(COLOURS)``.
        max_steps: episode length limit (truncation).
        step_size: displacement per unit action along x and y (arena is ``[-1, 1]^2``).
        target_half_size: half the side of each square, in arena units.
        hold_steps: consecutive steps on the target that count as "held" (continuous grasp).
        use_gripper: if true, success also needs the gripper dim ``action[6] > 0`` ("release")
            at a step where the dot has been held on the target; if false, holding is success.
        instruction_template: instruction format, with ``{object}`` and ``{receptacle}``.
        object_name: the moved piece's name in the instruction.
        same_start_groups: when ``> 1``, a reset of ALL envs gives each run of
            ``same_start_groups`` consecutive envs the same episode (same initial state): the
            groups of GRPO(s) (paper Sec. 4.1). Partial resets still draw fresh episodes.
        target_box: ``(x_min, y_min, x_max, y_max)`` box the square centres are drawn from
            (``None``: anywhere in the arena they fit).
        start_box: box the dot's start is drawn from (``None``: anywhere off the squares).
        terminate_on_success: end the episode (``terminated``) at its first success; if false,
            success is recorded (the metrics latch) and the episode runs to ``max_steps``: the
            fixed-length episodes GRPO / TPO compare (``collector.episodes=fixed``).
    """

    image_size: int = 32
    num_targets: int = 2
    max_steps: int = 10
    step_size: float = 0.4
    target_half_size: float = 0.35
    hold_steps: int = 2
    use_gripper: bool = True
    instruction_template: str = "put {object} on {receptacle}"
    object_name: str = "dot"
    same_start_groups: int = 1
    target_box: tuple[float, float, float, float] | None = None
    start_box: tuple[float, float, float, float] | None = None
    terminate_on_success: bool = True

    def __post_init__(self) -> None:
        for name in ("target_box", "start_box"):
            box = getattr(self, name)
            if box is None:
                continue
            if len(box) != 4 or not (-1 <= box[0] <= box[2] <= 1 and -1 <= box[1] <= box[3] <= 1):
                raise ValueError(
                    f"{name}={box} should be (x_min, y_min, x_max, y_max) with "
                    "-1 <= x_min <= x_max <= 1 and -1 <= y_min <= y_max <= 1"
                )
            object.__setattr__(self, name, tuple(float(v) for v in box))
        if self.same_start_groups < 1:
            raise ValueError(f"same_start_groups={self.same_start_groups} must be >= 1")
        if self.image_size < 8:
            raise ValueError(f"image_size={self.image_size} is too small; use at least 8 pixels")
        if not 1 <= self.num_targets <= len(COLOURS):
            raise ValueError(
                f"num_targets={self.num_targets} should be in [1, {len(COLOURS)}] (one colour each)"
            )
        if self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} should be >= 1")
        if not 0.0 < self.step_size <= 2.0:
            raise ValueError(f"step_size={self.step_size} should be in (0, 2]")
        if not 0.0 < self.target_half_size <= 0.5:
            raise ValueError(
                f"target_half_size={self.target_half_size} should be in (0, 0.5] so squares fit"
            )
        if self.num_targets > 2 and self.target_half_size > 0.3:
            raise ValueError(
                f"{self.num_targets} squares of half size {self.target_half_size} hardly fit in "
                "the arena; use target_half_size <= 0.3"
            )
        if self.hold_steps < 1:
            raise ValueError(f"hold_steps={self.hold_steps} should be >= 1")
        fields = sorted(
            f for _, f, _, _ in string.Formatter().parse(self.instruction_template) if f
        )
        if fields != ["object", "receptacle"]:
            raise ValueError(
                f"instruction_template={self.instruction_template!r} should contain {{object}} "
                f"and {{receptacle}} once each (it has {fields})"
            )


class ToyReachEnv(EnvBase):
    """Toy VLA task: put the white dot on the coloured square the instruction names.

    Task: a ``image_size`` x ``image_size`` frame of the arena ``[-1, 1]^2`` (x to the right,
    y up) shows ``num_targets`` coloured squares and a white 3x3-pixel dot (the agent). The
    instruction reads e.g. "put dot on red square". Action dims 0-1 move the dot by
    ``step_size * action[:2]`` (clipped to the arena), dim 6 is the gripper, dims 2-5 are
    ignored.

    Randomizations: square colours, positions (non-overlapping) and the dot's start (outside
    every square) are drawn from ``numpy.random.default_rng([seed, episode_id])``, so an episode
    is fully defined by the env seed and its episode id. Dynamics are deterministic.

    Metrics (bool ``[B, 1]``, "has happened in this episode so far", as in the paper):

    - ``grasped``: the dot has been on the target square after some step (reached it);
    - ``continuous_grasp``: it has stayed on the target for ``hold_steps`` consecutive steps;
    - ``success``: while held (``continuous_grasp`` at that step), the gripper is released
      (``action[6] > 0``); with ``use_gripper=False`` success is ``continuous_grasp``.

    Reward: sparse, the per-step difference of the paper's potential
    ``0.1 * grasped + 0.1 * continuous_grasp + 1.0 * success``, so the return is the final
    potential (1.2 for a success). Terminated on success (unless ``terminate_on_success=False``:
    then every episode lasts ``max_steps``), truncated after ``max_steps`` steps (``truncated``
    is false when the last step succeeds and terminates).

    Optimal policy (see :meth:`oracle_action`): move the dot toward the target's centre,
    ``action[:2] = clip((target - dot) / step_size, -1, 1)``, with ``action[6] = 1``; it enters
    the square within ``ceil((2 - 2 * half) / step_size)`` steps (4 with the defaults) and
    succeeds ``hold_steps - 1`` steps later, always before the limit. A uniformly random
    policy succeeds in about 10 % of episodes with the defaults (measured in the tests).

    Learnability (checked with a plain PPO, 64 envs x 16 steps per iteration, 7 x 256-way
    token heads as in OpenVLA, on 2 shared CPU cores): from the true state (dot and target
    positions) success goes from 10 % to about 90 % in 75 iterations with the defaults and
    to about 100 % in 50 iterations with ``hold_steps=1, use_gripper=False`` (success = reach,
    random success about 30 %; ``grasped``, ``continuous_grasp`` and ``success`` then
    coincide). From pixels, a small CNN learns much more slowly (30 % -> 50 % in 300
    iterations of the easy variant): perception dominates, so warm up with demonstrations
    from :meth:`oracle_action` (as the paper's SFT warm-up) before RL.

    Episode ids: each reset env takes the next id of a counter (from 0, reset by
    ``set_seed``), or the ids given as ``env.reset(episode_id=ids)`` (``[B]``, only the reset
    envs' entries are used), which replays those episodes.

    Args:
        num_envs: batch size ``B``.
        config: task options.
        seed: env seed (with the episode id it defines every episode).
        device: where the output tensors live.

    Examples:
        >>> env = ToyReachEnv(2, seed=0)
        >>> td = env.reset()
        >>> td[IMAGE_KEY].shape, td[IMAGE_KEY].dtype
        (torch.Size([2, 32, 32, 3]), torch.uint8)
        >>> td.get(INSTRUCTION_KEY).tolist()[0].startswith("put dot on")
        True
        >>> _ = td.set(ACTION_KEY, env.oracle_action())
        >>> td = env.step(td)
        >>> td["next", REWARD_KEY].shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        num_envs: int = 1,
        *,
        config: ToyReachConfig | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} should be >= 1")
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.config = config = config if config is not None else ToyReachConfig()
        self.num_envs = num_envs
        self._colour_names = list(COLOURS)
        self._palette = torch.tensor([COLOURS[c] for c in self._colour_names], dtype=torch.uint8)
        size = config.image_size
        set_vla_specs(
            self,
            image_size=(size, size),
            state_dim=2,
            state_range=(-1.0, 1.0),
            instruction_example="put dot on red square",
        )
        # per-env state (CPU; outputs are moved to self.device)
        self.agent = torch.zeros(num_envs, 2)
        self.targets = torch.zeros(num_envs, config.num_targets, 2)  # index 0 is the target
        self.colours = torch.zeros(num_envs, config.num_targets, dtype=torch.long)
        self.episode_id = torch.full((num_envs,), -1, dtype=torch.long)
        self.step_count = torch.zeros(num_envs, dtype=torch.long)
        self.dwell = torch.zeros(num_envs, dtype=torch.long)
        self.metrics = torch.zeros(num_envs, 3, dtype=torch.bool)
        self.instructions = [""] * num_envs
        self._set_seed(seed)

    # -- episode sampling -----------------------------------------------------------------------
    def _sample_episode(self, episode_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(agent [2], square centres [K, 2], colour ids [K]) of one episode."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, int(episode_id)])
        half = cfg.target_half_size
        colours = rng.permutation(len(COLOURS))[: cfg.num_targets]
        low, high = np.full(2, -(1 - half)), np.full(2, 1 - half)
        if cfg.target_box is not None:
            low, high = np.asarray(cfg.target_box[:2]), np.asarray(cfg.target_box[2:])
        for _ in range(_MAX_TRIES):
            centres = rng.uniform(low, high, size=(cfg.num_targets, 2))
            gaps = np.abs(centres[:, None] - centres[None]).max(-1) + 9.0 * np.eye(cfg.num_targets)
            if gaps.min() > 2 * half + 0.1:  # squares apart by at least 0.1
                break
        else:
            raise RuntimeError(f"could not place {cfg.num_targets} squares; lower target_half_size")
        low, high = np.full(2, -1.0), np.full(2, 1.0)
        if cfg.start_box is not None:
            low, high = np.asarray(cfg.start_box[:2]), np.asarray(cfg.start_box[2:])
        for _ in range(_MAX_TRIES):
            agent = rng.uniform(low, high, size=2)
            if (np.abs(centres - agent).max(-1) > half + 0.05).all():  # start off every square
                break
        else:
            raise RuntimeError("could not place the dot off the squares; lower target_half_size")
        return agent, centres, colours

    def _set_seed(self, seed: int | None) -> None:
        self.seed = 0 if seed is None else int(seed)
        self._next_episode_id = 0

    # -- rendering ------------------------------------------------------------------------------
    def _observation(self) -> TensorDict:
        cfg = self.config
        size = cfg.image_size
        centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
        xs = centres[None, None, :]  # column -> x
        ys = centres.flip(0)[None, :, None]  # row 0 is the top (y = +1)
        image = torch.tensor(_BACKGROUND, dtype=torch.uint8).expand(self.num_envs, size, size, 3)
        image = image.clone()
        fg = torch.zeros(self.num_envs, size, size, dtype=torch.bool)
        half = cfg.target_half_size
        for k in range(cfg.num_targets):
            cx = self.targets[:, k, 0, None, None]
            cy = self.targets[:, k, 1, None, None]
            inside = ((xs - cx).abs() <= half) & ((ys - cy).abs() <= half)
            image = torch.where(
                inside[..., None], self._palette[self.colours[:, k]][:, None, None], image
            )
            fg |= inside
        radius = 1.5 * 2.0 / size  # 3x3 pixels
        dot = ((xs - self.agent[:, 0, None, None]).abs() < radius) & (
            (ys - self.agent[:, 1, None, None]).abs() < radius
        )
        image = torch.where(dot[..., None], torch.tensor(_AGENT, dtype=torch.uint8), image)
        fg |= dot
        out = TensorDict(
            {
                IMAGE_KEY: image,
                FOREGROUND_MASK_KEY: fg,
                STATE_KEY: self.agent.clone(),
                EPISODE_ID_KEY: self.episode_id.clone(),
                GRASPED_KEY: self.metrics[:, 0:1].clone(),
                CONTINUOUS_GRASP_KEY: self.metrics[:, 1:2].clone(),
                SUCCESS_KEY: self.metrics[:, 2:3].clone(),
            },
            batch_size=self.batch_size,
        )
        out.set(INSTRUCTION_KEY, NonTensorStack(*self.instructions))
        return out.to(self.device)

    # -- EnvBase hooks --------------------------------------------------------------------------
    def _reset(
        self,
        tensordict: TensorDictBase | None = None,
        *,
        episode_id: torch.Tensor | Sequence[int] | None = None,
        **kwargs,
    ) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        reset = (
            torch.ones(self.num_envs, dtype=torch.bool)
            if reset is None
            else reset.reshape(self.num_envs).cpu()
        )
        which = reset.nonzero().flatten().tolist()
        if episode_id is not None:
            ids = torch.as_tensor(episode_id, dtype=torch.long).reshape(-1).cpu()
            if ids.numel() != self.num_envs:
                raise ValueError(
                    f"episode_id has {ids.numel()} entries; pass one per env ({self.num_envs}), "
                    "only the reset envs' entries are used"
                )
            ids = ids[which].tolist()
        elif self.config.same_start_groups > 1 and len(which) == self.num_envs:
            group = self.config.same_start_groups
            ids = [self._next_episode_id + env // group for env in which]
            self._next_episode_id += -(-self.num_envs // group)
        else:
            ids = list(range(self._next_episode_id, self._next_episode_id + len(which)))
            self._next_episode_id += len(which)
        cfg = self.config
        for env, eid in zip(which, ids, strict=True):
            agent, centres, colours = self._sample_episode(eid)
            self.agent[env] = torch.as_tensor(agent, dtype=torch.float32)
            self.targets[env] = torch.as_tensor(centres, dtype=torch.float32)
            self.colours[env] = torch.as_tensor(colours, dtype=torch.long)
            self.episode_id[env] = eid
            receptacle = f"{self._colour_names[int(colours[0])]} square"
            self.instructions[env] = cfg.instruction_template.format(
                object=cfg.object_name, receptacle=receptacle
            )
        self.step_count[reset] = 0
        self.dwell[reset] = 0
        self.metrics[reset] = False
        out = self._observation()
        for key in (DONE_KEY, TERMINATED_KEY, TRUNCATED_KEY):
            out.set(key, torch.zeros(self.num_envs, 1, dtype=torch.bool, device=self.device))
        return out

    def _potential(self) -> torch.Tensor:
        weights = torch.tensor(_POTENTIAL)
        return (self.metrics.float() * weights).sum(-1, keepdim=True)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        cfg = self.config
        action = tensordict.get(ACTION_KEY).reshape(self.num_envs, -1).float().cpu().clamp(-1, 1)
        # TorchRL's partial steps (e.g. rollout(break_when_all_done=True)): "_step" marks the
        # envs to advance; the others keep their state and get a zero reward.
        stepping = tensordict.get("_step", None)
        stepping = (
            torch.ones(self.num_envs, dtype=torch.bool)
            if stepping is None
            else stepping.reshape(self.num_envs).cpu()
        )
        before = self._potential()
        moved = (self.agent + cfg.step_size * action[:, :2]).clamp(-1.0, 1.0)
        self.agent = torch.where(stepping[:, None], moved, self.agent)
        self.step_count += stepping.long()
        on_target = (self.agent - self.targets[:, 0]).abs().amax(-1) <= cfg.target_half_size
        dwell = torch.where(on_target, self.dwell + 1, torch.zeros_like(self.dwell))
        self.dwell = torch.where(stepping, dwell, self.dwell)
        held = self.dwell >= cfg.hold_steps
        released = action[:, 6] > 0 if cfg.use_gripper else torch.ones_like(held)
        self.metrics[:, 0] |= on_target & stepping
        self.metrics[:, 1] |= held & stepping
        self.metrics[:, 2] |= held & released & stepping
        reward = self._potential() - before  # potential differences: return = final potential
        terminated = self.metrics[:, 2:3].clone()
        if not cfg.terminate_on_success:  # success recorded (latched metrics), not an ending
            terminated = torch.zeros_like(terminated)
        truncated = (self.step_count >= cfg.max_steps)[:, None] & ~terminated
        out = self._observation()
        out.set(REWARD_KEY, reward.to(self.device))
        out.set(TERMINATED_KEY, terminated.to(self.device))
        out.set(TRUNCATED_KEY, truncated.to(self.device))
        out.set(DONE_KEY, (terminated | truncated).to(self.device))
        return out

    # -- expert ---------------------------------------------------------------------------------
    def oracle_action(self) -> torch.Tensor:
        """The optimal action for the current state: ``[B, 7]`` in ``[-1, 1]``.

        Moves toward the target's centre as fast as allowed, gripper released (``+1``).
        """
        action = torch.zeros(self.num_envs, 7)
        action[:, :2] = ((self.targets[:, 0] - self.agent) / self.config.step_size).clamp(-1, 1)
        action[:, 6] = 1.0
        return action.to(self.device)


def make_toy_env(
    num_envs: int, *, seed: int, device: torch.device | str = "cpu", **options
) -> ToyReachEnv:
    """Build a :class:`ToyReachEnv`; ``options`` are :class:`ToyReachConfig` fields.

    Examples:
        >>> env = make_toy_env(4, seed=1, image_size=16, num_targets=3, target_half_size=0.25)
        >>> env.reset()[IMAGE_KEY].shape
        torch.Size([4, 16, 16, 3])
    """
    unknown = set(options) - {f.name for f in dataclasses.fields(ToyReachConfig)}
    if unknown:
        raise TypeError(
            f"make_toy_env got unknown options {sorted(unknown)}; valid ones are the fields of "
            "ToyReachConfig"
        )
    return ToyReachEnv(num_envs, config=ToyReachConfig(**options), seed=seed, device=device)


#: the toy oracle's demonstrations start from ``seed + ORACLE_SEED_OFFSET``: other episodes than
#: those a run with ``seed`` collects or is evaluated on
ORACLE_SEED_OFFSET = 7919


def toy_oracle_steps(
    episodes: int, *, seed: int, image_size: int, max_steps: int
) -> tuple[TensorDictBase, torch.Tensor]:
    """Run the toy env's oracle for ``episodes`` episodes; keep every step before the end.

    Args:
        episodes: how many episodes (one env each).
        seed: the run's seed; the episodes are drawn with ``seed + ORACLE_SEED_OFFSET``.
        image_size: the env's image side (``env.width``).
        max_steps: the episode length limit (``env.max_episode_steps``).

    Returns:
        the kept steps (image, instruction, oracle action, state) and each one's time step.

    Examples:
        >>> steps, times = toy_oracle_steps(2, seed=0, image_size=16, max_steps=4)
        >>> steps.shape[0] == times.shape[0] > 0, int(times.max()) < 4
        (True, True)
    """
    env = make_toy_env(
        episodes, seed=seed + ORACLE_SEED_OFFSET, image_size=image_size, max_steps=max_steps
    )
    td = env.reset()
    alive = torch.ones(episodes, dtype=torch.bool)
    images, instructions, actions, states, times = [], [], [], [], []
    for t in range(max_steps):
        action = env.oracle_action()
        td.set(ACTION_KEY, action)
        images.append(td.get(IMAGE_KEY)[alive])
        instructions.extend(
            i for i, a in zip(td.get(INSTRUCTION_KEY), alive.tolist(), strict=True) if a
        )
        actions.append(action[alive])
        states.append(td.get(STATE_KEY)[alive])
        times.append(torch.full((int(alive.sum()),), t))
        td = env.step(td)
        alive &= ~td.get(next_key(DONE_KEY)).squeeze(-1)
        td = td.get("next")
        if not alive.any():
            break
    steps = TensorDict(
        {
            IMAGE_KEY: torch.cat(images),
            ACTION_KEY: torch.cat(actions),
            STATE_KEY: torch.cat(states),
        },
        [len(instructions)],
    )
    steps.set_non_tensor(INSTRUCTION_KEY, None)
    steps[INSTRUCTION_KEY] = instructions
    return steps, torch.cat(times)


def toy_oracle_demos(
    episodes: int, *, seed: int, image_size: int, max_steps: int
) -> TensorDictBase:
    """SFT demonstrations of the toy env: :func:`toy_oracle_steps` without the states.

    Examples:
        >>> demos = toy_oracle_demos(2, seed=0, image_size=16, max_steps=4)
        >>> keys = demos.keys(include_nested=True)
        >>> IMAGE_KEY in keys, ACTION_KEY in keys, STATE_KEY in keys
        (True, True, False)
    """
    steps, _ = toy_oracle_steps(episodes, seed=seed, image_size=image_size, max_steps=max_steps)
    return steps.exclude(STATE_KEY)
