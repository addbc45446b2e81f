"""Does an SFT policy read the image? Two measurements on the held-out demo episodes of a
``sft_experiment.py`` run (same 5% episode split, seed 0):

1. teacher-forced greedy accuracy per action dimension (exact bin, and within 8 bins);
2. the held-out NLL with each step's image swapped for another step's, beside the true one.

    python docs/results/maniskill-cpu/diagnose_image_use.py runs/sft-a/last.pt \
        --demos data/demos96-s1 data/demos96-s2
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from vla_torchrl.envs.demos import load_demos
from vla_torchrl.keys import ACTION_KEY, ACTION_TOKENS_KEY, EPISODE_ID_KEY
from vla_torchrl.modules.passes import teacher_forced_hidden
from vla_torchrl.modules.processors.bundle import read_observation
from vla_torchrl.objectives import VLASFTLoss
from vla_torchrl.training.sft_loop import held_out_loss

sys.path.insert(0, str(Path(__file__).parent))
from saved_run import saved_policy  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("state_dict")
    p.add_argument("--demos", nargs="+", required=True)
    a = p.parse_args()
    b = saved_policy(a.state_dict)
    parts = []
    for i, d in enumerate(a.demos):  # the same episode ids as sft_experiment.py
        td = load_demos(d).to_tensordict()
        td[EPISODE_ID_KEY] = td[EPISODE_ID_KEY] + 100000 * i
        parts.append(td)
    demos = torch.cat(parts)
    demos[ACTION_TOKENS_KEY] = b.processor.action_tokenizer.actions_to_tokens(demos[ACTION_KEY])
    eps = torch.unique(demos[EPISODE_ID_KEY])
    perm = eps[torch.randperm(len(eps), generator=torch.Generator().manual_seed(0))]
    is_held = torch.isin(demos[EPISODE_ID_KEY], perm[: max(1, len(eps) // 20)])
    held = demos[is_held]
    first = b.model.config.action_token_ids[0]
    exact, near = torch.zeros(7), torch.zeros(7)
    with torch.no_grad():
        for i in range(0, held.shape[0], 64):
            mb = held[i : i + 64]
            images, texts = read_observation(mb, b.evaluator.image_key, b.evaluator.instruction_key)
            tokens = mb[ACTION_TOKENS_KEY].long()
            hidden = teacher_forced_hidden(b.model, b.processor, images, texts, tokens)
            pred = b.model.action_logits(hidden[:, :7]).argmax(-1) + first
            exact += (pred == tokens).float().sum(0)
            near += ((pred - tokens).abs() <= 8).float().sum(0)
    n = held.shape[0]
    loss = VLASFTLoss(b.evaluator)
    real = held_out_loss(loss, held, 64)
    shuffled = held_out_loss(loss, held, 64, shuffle_images=True)
    print(
        json.dumps(
            {
                "held_out_steps": n,
                "exact_bin_accuracy": [round(x, 3) for x in (exact / n).tolist()],
                "within_8_bins": [round(x, 3) for x in (near / n).tolist()],
                "nll": round(real, 4),
                "nll_shuffled_images": round(shuffled, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
