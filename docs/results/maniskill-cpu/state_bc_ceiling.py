"""How well can behaviour cloning do on these demonstrations with perfect perception?

The image policy of ``sft_experiment.py`` must read the gripper, the object and the plate off
64 px frames. This script removes perception: an MLP reads the simulator's state (the
privileged labels of ``vla-torchrl-collect privileged=true``) and predicts the same 7 x 256
action tokens as the VLA (the demos' q01/q99 statistics, OpenVLA's binning), trained with the
same cross-entropy. It is then played closed loop on the held-out scenes of the image policy's
evaluation (``ind``, seed 1000, 40-step episodes), reading the state from the simulator at
every step. Its success rate is a ceiling for the image policy on the same data and action
interface; the gap between the two is what perception costs.

Inputs (30 numbers, standardized with the training split's mean / std): the gripper, object and
receptacle positions; the three pairwise offsets; the gripper's rotation matrix; the object's
long-axis yaw as (cos 2y, sin 2y) (it is defined modulo pi); the grasp flag.

    python docs/results/maniskill-cpu/state_bc_ceiling.py --demos data/dart96-s1 data/dart96-s2 \
        --out runs/state-bc --episodes 64
    python docs/results/maniskill-cpu/state_bc_ceiling.py --demos data/dart96-s1 data/dart96-s2 \
        --out runs/state-bc-noise --eval-only runs/state-bc/state_bc.pt --temperatures greedy \
        --position-noise-cm 1,2

``--perception RUN`` (eighth session) puts the pretrained towers of a ``pretrain_vision.py
--keypoint-coef`` run in front of the MLP: the three positions come from the keypoint head
(decoded, back-projected through the camera) and the grasp flag from the flat head's grasp
logit, both read off the 96 px frame, in training (the demo frames) and in the closed loop
(the rendered frame of each step). The gripper's rotation and the object's yaw still come from
the simulator, unless ``--blind-orientation`` replaces them with constants (identity, yaw 0)
in training and in the closed loop, or ``--perceive-orientation`` reads them too off the frame
(the orientation head of ``pretrain_vision.py --orientation-coef``): then every input but
nothing else comes from the image. This is a modular image policy: its success says what the
towers' perception supports when the action model is a plain MLP trained on their estimates.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

from vla_torchrl.envs import make_env
from vla_torchrl.envs.episodes import run_episodes
from vla_torchrl.envs.maniskill.expert import ExpertPolicy
from vla_torchrl.keys import (
    ACTION_KEY,
    EPISODE_ID_KEY,
    IMAGE_KEY,
    METRIC_KEYS,
    PRIVILEGED_KEY,
    SUCCESS_KEY,
)
from vla_torchrl.modules.processors.action import ActionTokenizer, action_statistics
from vla_torchrl.utils.threads import torch_threads

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_vision import (  # noqa: E402
    POSITIONS,
    KeypointHead,
    OrientationHead,
    PrivilegedHead,
    build_small,
    decode_keypoints,
    decode_orientation,
    held_out_split,
    jsonl_logger,
    load_privileged_demos,
    stem_of,
    unproject,
)

N_BINS = 256
FIRST_ID = 32000 - N_BINS  # the id of class 0 (OpenVLA's last 256 ids)


def without_orientation(s):
    """``s`` with the gripper's rotation and the object's yaw replaced by constants (identity,
    0): what a policy that reads only the towers' positions and grasp flag knows."""
    s = dict(s)
    b = s["tcp_position"].shape[0]
    s["tcp_rotation"] = torch.eye(3).expand(b, 3, 3)
    s["object_yaw"] = torch.zeros(b)
    return s


def state_features(s) -> torch.Tensor:
    """``[B, 30]`` inputs from a privileged-state mapping (see the module docstring)."""
    tcp, obj, rec = s["tcp_position"], s["object_position"], s["receptacle_position"]
    yaw = s["object_yaw"].float()
    b = tcp.shape[0]
    return torch.cat(
        [
            tcp,
            obj,
            rec,
            obj - tcp,
            rec - tcp,
            rec - obj,
            s["tcp_rotation"].reshape(b, 9),
            torch.stack([torch.cos(2 * yaw), torch.sin(2 * yaw)], -1),
            s["is_grasped"].float().reshape(b, 1),
        ],
        -1,
    ).float()


class StateBC(torch.nn.Module):
    """Standardized state -> 7 x 256 action-bin logits."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, width: int = 256) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        d = mean.numel()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, width),
            torch.nn.GELU(),
            torch.nn.Linear(width, width),
            torch.nn.GELU(),
            torch.nn.Linear(width, width),
            torch.nn.GELU(),
            torch.nn.Linear(width, 7 * N_BINS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).view(-1, 7, N_BINS)


POSITION_KEYS = ("tcp_position", "object_position", "receptacle_position")


def with_position_noise(s, noise: dict[str, torch.Tensor] | None):
    """``s`` with ``noise[k]`` added to each of the three positions (a perception error)."""
    if noise is None:
        return s
    s = dict(s)
    for k in POSITION_KEYS:
        s[k] = s[k] + noise[k]
    return s


class TowerPerception:
    """The towers of a ``pretrain_vision.py --keypoint-coef`` run as a state estimator: uint8
    frames ``[N, H, W, 3]`` -> the three positions (root frame) and the grasp flag."""

    def __init__(self, run: str, img: int = 64, patch: int = 8, orientation: bool = False) -> None:
        stem = stem_of(Path(run) / "pretrained.pt")
        bundle = build_small(image_size=img, patch=patch, stem=stem)
        self.model, self.processor = bundle.model, bundle.processor.image_processor
        self.model.load_state_dict(torch.load(Path(run) / "pretrained.pt", weights_only=True))
        saved = torch.load(Path(run) / "head.pt", weights_only=True)
        hidden = self.model.config.llm_hidden_size
        self.flat = PrivilegedHead(hidden, (img // patch) ** 2)
        self.flat.load_state_dict(saved["head"])
        self.keypoints = KeypointHead(hidden, len(POSITIONS))
        self.keypoints.load_state_dict(saved["keypoint_head"])
        self.grid, self.depth = img // patch, (saved["depth_mean"], saved["depth_std"])
        self.orientation = None
        if orientation:
            if "orient_mean" not in saved:
                raise SystemExit(f"{run}/head.pt has no orientation head: --orientation-coef")
            self.orientation = OrientationHead(hidden, (img // patch) ** 2)
            self.orientation.load_state_dict(saved["orientation_head"])
            self.orientation.eval()
            self.o_mean, self.o_std = saved["orient_mean"], saved["orient_std"]
        for m in (self.model, self.flat, self.keypoints):
            m.eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        keys = (*POSITIONS, "is_grasped")
        out = {k: [] for k in keys + (("tcp_rotation", "object_yaw") if self.orientation else ())}
        for i in range(0, images.shape[0], 256):
            frames = images[i : i + 256]
            z = self.model.embed_images(self.processor(frames))
            kps = decode_keypoints(self.keypoints(z), self.grid, *self.depth)
            xyz = unproject(kps, *frames.shape[-3:-1])
            for j, k in enumerate(POSITIONS):
                out[k].append(xyz[:, j])
            out["is_grasped"].append(self.flat(z)[1] > 0)
            if self.orientation is not None:
                rot, yaw = decode_orientation(self.orientation(z) * self.o_std + self.o_mean)
                out["tcp_rotation"].append(rot)
                out["object_yaw"].append(yaw)
        return {k: torch.cat(v) for k, v in out.items()}


class StateActor:
    """A rollout policy: reads the simulator's state through the expert, outputs env actions."""

    def __init__(
        self,
        model,
        tokenizer,
        expert,
        temperature: float | None,
        noise_m: float = 0.0,
        noise_kind: str = "step",
        perception: TowerPerception | None = None,
        blind_orientation: bool = False,
    ) -> None:
        """``noise_m``: Gaussian noise (metres per axis) on the positions, drawn afresh at every
        step (``noise_kind="step"``) or once per episode (``"episode"``: a constant bias, as a
        systematic perception error); the pairwise offsets then err by sqrt(2) ``noise_m``."""
        self.model, self.tokenizer, self.expert, self.t = model, tokenizer, expert, temperature
        self.noise_m, self.noise_kind = noise_m, noise_kind
        self.perception, self.blind_orientation = perception, blind_orientation
        self.generator = torch.Generator().manual_seed(0)
        self.noise = None

    def _draw(self, s) -> dict[str, torch.Tensor]:
        return {
            k: self.noise_m * torch.randn(s[k].shape, generator=self.generator)
            for k in POSITION_KEYS
        }

    @torch.no_grad()
    def __call__(self, td):
        self.expert.actions()  # refreshes the privileged state; its action is unused
        s = self.expert.privileged_state()
        if self.perception is not None:
            frames = td[IMAGE_KEY].reshape(-1, *td[IMAGE_KEY].shape[-3:])
            s = {**s, **self.perception(frames)}
        if self.blind_orientation:
            s = without_orientation(s)
        if self.noise_m > 0:
            first = any(int(e.task.elapsed_steps.reshape(-1)[0]) == 0 for e in self.expert.experts)
            if self.noise_kind == "step" or first or self.noise is None:
                self.noise = self._draw(s)
            s = with_position_noise(s, self.noise)
        logits = self.model(state_features(s))
        if self.t is None:
            cls = logits.argmax(-1)
        else:
            cls = torch.distributions.Categorical(logits=logits / self.t).sample()
        action = self.tokenizer.tokens_to_actions(cls + FIRST_ID)
        td.set(ACTION_KEY, action.reshape(*td.batch_size, 7).to(td.device))
        return td


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--demos", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--bs", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--temperatures", default="greedy,0.6")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--position-noise-cm",
        default="0",
        help="comma-separated: closed-loop runs with Gaussian noise on the positions (cm/axis)",
    )
    p.add_argument("--noise-kind", choices=["step", "episode"], default="step")
    p.add_argument(
        "--train-noise-cm",
        type=float,
        default=0.0,
        help="train on positions with this Gaussian noise (cm/axis): robustness to perception",
    )
    p.add_argument("--eval-only", default=None, help="a state_bc.pt to play (no training)")
    p.add_argument(
        "--perception",
        default=None,
        help="a pretrain_vision.py --keypoint-coef run: read positions and grasp from its towers",
    )
    p.add_argument(
        "--perceive-orientation",
        action="store_true",
        help="with --perception: the gripper rotation and object yaw from the towers too",
    )
    p.add_argument(
        "--blind-orientation",
        action="store_true",
        help="constant gripper rotation and object yaw (train and closed loop)",
    )
    a = p.parse_args()
    torch.manual_seed(a.seed)
    out = Path(a.out)
    emit = jsonl_logger(out)

    demos = load_privileged_demos(a.demos)
    state = demos[PRIVILEGED_KEY]
    perception = None
    if a.perception:
        perception = TowerPerception(a.perception, orientation=a.perceive_orientation)
    if perception is not None:
        ts = time.time()
        estimates = perception(demos[IMAGE_KEY])
        state = state.clone()
        for k, v in estimates.items():
            state[k] = v.to(state[k].dtype)
        emit(event="perception", frames=len(demos), s=round(time.time() - ts, 1))
    x = state_features(without_orientation(state) if a.blind_orientation else state)
    train_idx, val_idx = held_out_split(demos[EPISODE_ID_KEY])
    stats = action_statistics(demos[ACTION_KEY][train_idx])["action"]
    tok = ActionTokenizer(q01=stats["q01"], q99=stats["q99"], mask=stats["mask"])
    y = tok.actions_to_tokens(demos[ACTION_KEY]) - FIRST_ID
    mean, std = x[train_idx].mean(0), x[train_idx].std(0).clamp_min(1e-3)
    model = StateBC(mean, std)
    if a.eval_only:
        saved = torch.load(a.eval_only, weights_only=True)
        model.load_state_dict(saved["model"])
        stats = saved["stats"]
        tok = ActionTokenizer(q01=stats["q01"], q99=stats["q99"], mask=stats["mask"])
        a.steps = 0
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps, eta_min=a.lr * 0.05)
    emit(event="data", n=len(x), train=len(train_idx), val=len(val_idx))

    def held_out():
        model.eval()
        with torch.no_grad():
            logits = model(x[val_idx])
            nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[val_idx].flatten())
            exact = (logits.argmax(-1) == y[val_idx]).float().mean(0)
        model.train()
        return float(nll), [round(float(v), 3) for v in exact]

    for step in range(1, a.steps + 1):
        idx = train_idx[torch.randint(len(train_idx), (a.bs,))]
        xb = x[idx]
        if a.train_noise_cm > 0:  # the same noise model as the closed loop's, per sample
            s = state[idx].to_dict()
            s = without_orientation(s) if a.blind_orientation else s
            noise = {k: a.train_noise_cm / 100 * torch.randn(s[k].shape) for k in POSITION_KEYS}
            xb = state_features(with_position_noise(s, noise))
        loss = torch.nn.functional.cross_entropy(model(xb).flatten(0, 1), y[idx].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == a.steps:
            nll, exact = held_out()
            emit(
                event="train",
                step=step,
                loss=round(float(loss.detach()), 4),
                val_nll=round(nll, 4),
                val_exact_per_dim=exact,
            )
    if not a.eval_only:
        torch.save({"model": model.state_dict(), "stats": stats}, out / "state_bc.pt")

    env = make_env(
        "ind", num_envs=1, image_size=(96, 96), seed=1000, max_steps=a.max_steps, parallel=False
    )
    expert = ExpertPolicy(env)
    model.eval()
    runs = [
        (t, float(cm)) for cm in a.position_noise_cm.split(",") for t in a.temperatures.split(",")
    ]
    for t, noise_cm in runs:
        temperature = None if t == "greedy" else float(t)
        env.set_seed(1000)
        ts = time.time()
        with torch_threads(1), torch.random.fork_rng():
            torch.manual_seed(0)
            recs = run_episodes(
                env,
                StateActor(
                    model,
                    tok,
                    expert,
                    temperature,
                    noise_m=noise_cm / 100,
                    noise_kind=a.noise_kind,
                    perception=perception,
                    blind_orientation=a.blind_orientation,
                ),
                episodes=a.episodes,
                max_steps=a.max_steps,
            )
        n = max(len(recs), 1)
        r = {k: round(sum(rec[k] for rec in recs) / n, 4) for k in METRIC_KEYS}
        emit(
            event="closed_loop",
            temperature=t,
            position_noise_cm=noise_cm,
            noise_kind=a.noise_kind,
            train_noise_cm=a.train_noise_cm,
            perception=a.perception,
            blind_orientation=a.blind_orientation,
            perceive_orientation=a.perceive_orientation,
            n=len(recs),
            eval_s=round(time.time() - ts, 1),
            **r,
            successes=int(sum(rec[SUCCESS_KEY] for rec in recs)),
        )
    env.close()


if __name__ == "__main__":
    main()
