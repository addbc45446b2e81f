#!/bin/bash
# issue 14, fifteenth session: which half of the pipeline makes the recipe's SFT (18.8%, and
# 19.1% with the token embedding frozen) trail the scripts' (25.0%)? The scripts' SFT
# (sft_experiment.py with convstem-pipeline.sh's settings, seed 0) on the recipe's pretraining
# (runs/pv-recipe: its policy's state dict as --init, its heads.pt as --head), then the 256
# held-out ind episodes of eval256-ppo3 (seeds 1000-1003 x 64, T = 0.6).
here=$(cd "$(dirname "$0")" && pwd)
cd "${WORKDIR:-.}"
PY=${PY:-python}
source "$here/ppo_v3.sh"
D="data/dart96-s1 data/dart96-s2 data/dart96-s3 data/dart96-s4"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
out=runs/sft-scripts-pvr; init=runs/pv-recipe-as-script
stamp init
[ -e $init/pretrained.pt ] || $PY - <<'PYEOF' || exit 1
import shutil
from pathlib import Path

import torch

from vla_torchrl.training.policy import load_policy

out = Path("runs/pv-recipe-as-script")
out.mkdir(parents=True, exist_ok=True)
torch.save(load_policy("runs/pv-recipe/policy").model.state_dict(), out / "pretrained.pt")
shutil.copy("runs/pv-recipe/heads.pt", out / "head.pt")
PYEOF
stamp sft
[ -e $out/last.pt ] || $PY $here/sft_experiment.py --demos $D \
    --out $out --steps 2400 --lr 3e-4 --warmup 200 --eval-every-min 999 \
    --ls-init 1.0 --eval-episodes 64 --init $init/pretrained.pt --head $init/head.pt \
    --aux-privileged-coef 1.0 --aux-keypoint-coef 1.0 --aux-orientation-coef 1.0 \
    > $out.log 2>&1 || exit 1
stamp export
[ -d $out/policy ] || $PY $here/export_policy.py $out/last.pt $out/policy || exit 1
stamp eval256
ppo_v3_eval256 SFT-scripts-pvr $out/policy runs/eval256-sft-scripts-pvr
stamp done
