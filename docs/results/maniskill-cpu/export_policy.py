"""Turn a state dict written by ``sft_experiment.py`` (``best.pt`` / ``last.pt``, with its
``cfg.json``) into a saved policy directory, so that ``vla-torchrl-eval --policy`` and
``model.init_from`` (PPO after SFT) can use it.

    python docs/results/maniskill-cpu/export_policy.py runs/sft-e/best.pt runs/sft-e/policy-best
"""

import argparse
import json
from pathlib import Path

import torch

from vla_torchrl.config.train_schema import AlgoConfig, ModelConfig
from vla_torchrl.modules.config import OpenVLAConfig
from vla_torchrl.training.policy import build_policy_from_config, load_policy, save_policy


def main():
    p = argparse.ArgumentParser()
    p.add_argument("state_dict")
    p.add_argument("out")
    a = p.parse_args()
    saved = json.loads((Path(a.state_dict).parent / "cfg.json").read_text())
    cfg, args = saved["cfg"], saved["args"]
    small = OpenVLAConfig.small().to_dict()
    del args  # the sizes are checked below; LayerScale's init value is overwritten by the weights

    def sizes(d):
        towers = {
            t: {k: v for k, v in d[t].items() if k not in ("layer_scale_init", "stem")}
            for t in ("dino", "siglip")
        }
        return {**{k: v for k, v in d.items() if k != "norm_stats"}, **towers}

    if sizes(small) != sizes(cfg):
        raise SystemExit(f"{a.state_dict}: not the model=small sizes; export supports only those")
    # a conv stem (ViTConfig.stem) travels as model.arch.<tower>.stem
    arch = {
        t: {"stem": cfg[t]["stem"]}
        for t in ("dino", "siglip")
        if cfg[t].get("stem", "patch") != small[t]["stem"]
    }
    model = ModelConfig(name="small", finetune="full", dtype="float32", arch=arch)
    algo = AlgoConfig(name="sft", critic="none", unnorm_key="maniskill_cpu")
    bundle = build_policy_from_config(model, algo)
    bundle.set_action_statistics("maniskill_cpu", cfg["norm_stats"]["maniskill_cpu"])
    bundle.model.load_state_dict(torch.load(a.state_dict, weights_only=True))
    save_policy(bundle, a.out, model, algo)
    back = load_policy(a.out)
    same = all(
        torch.equal(v, back.model.state_dict()[k]) for k, v in bundle.model.state_dict().items()
    )
    print(json.dumps({"policy": a.out, "reloads_identically": same}))


if __name__ == "__main__":
    main()
