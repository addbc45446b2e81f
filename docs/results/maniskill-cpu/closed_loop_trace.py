"""Where does a policy's closed loop go wrong? Plays a few held-out ``ind`` episodes (seed 1000,
the evaluation scenes of sft_experiment.py) with a run's weights and prints, per episode, the
gripper's distance to the object over time, the lowest height above the object it reached, and
when it closed the gripper. The scripted expert runs beside the policy only to read the
simulator's state (its actions are not used).

    python docs/results/maniskill-cpu/closed_loop_trace.py runs/sft-p/last.pt --episodes 4
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from vla_torchrl.envs import make_env
from vla_torchrl.envs.maniskill.expert import ExpertPolicy
from vla_torchrl.keys import ACTION_KEY, GRASPED_KEY

sys.path.insert(0, str(Path(__file__).parent))
from saved_run import saved_policy  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("state_dict")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--temperature", type=float, default=None, help="sample; default greedy")
    a = p.parse_args()
    b = saved_policy(a.state_dict)
    if a.temperature is None:
        actor = b.eval_actor(mode="greedy")
    else:
        actor = b.eval_actor(temperature=a.temperature, mode="sample")
    env = make_env(
        "ind", num_envs=1, image_size=(96, 96), seed=1000, max_steps=a.max_steps, parallel=False
    )
    expert = ExpertPolicy(env)
    torch.manual_seed(0)
    for ep in range(a.episodes):
        td = env.reset()
        dist, height, grip, grasped = [], [], [], False
        for _ in range(a.max_steps):
            expert.actions()  # refreshes the privileged state; its action is unused
            s = expert.privileged_state()
            d = (s["tcp_position"] - s["object_position"]).reshape(3)
            dist.append(round(100 * float(d[:2].norm()), 1))
            height.append(round(100 * float(d[2]), 1))
            with torch.no_grad():
                td = actor(td)
            grip.append(int(td.get(ACTION_KEY).reshape(7)[6] < 0))
            td = env.step(td)
            grasped |= bool(td.get(("next", GRASPED_KEY)).any())
            if bool(td.get(("next", "done")).any()):
                break
            td = td.get("next")
        closes = [i for i, g in enumerate(grip) if g]
        print(
            json.dumps(
                {
                    "episode": ep,
                    "steps": len(dist),
                    "xy_dist_cm": dist,
                    "height_above_object_cm": height,
                    "min_xy_dist_cm": min(dist),
                    "min_height_cm": min(height),
                    "first_close_step": closes[0] if closes else None,
                    "grasped": grasped,
                }
            ),
            flush=True,
        )
    env.close()


if __name__ == "__main__":
    main()
