#!/bin/bash
# issue 14, fifteenth session: is the token embedding why the recipe's SFT (18.8%) trails the
# scripts' (25.0%)? recipe-pipeline.sh's SFT again with model.freeze_token_embedding=true (as
# sft_experiment.py), everything else the same (pretraining reused from runs/pv-recipe), then the
# 256 held-out ind episodes of eval256-ppo3 (seeds 1000-1003 x 64, T = 0.6). Pair with the
# scripts' SFT and the recipe's first SFT through
# `vla-torchrl-report 'results=[runs/eval256-ppo3/episodes.jsonl,runs/eval256-sft-recipe/episodes.jsonl,runs/eval256-sft-recipe-fe/episodes.jsonl]'`.
here=$(cd "$(dirname "$0")" && pwd)
cd "${WORKDIR:-.}"
PY=${PY:-python}
export PY
source "$here/ppo_v3.sh"
SFT_RUN=runs/sft-recipe-fe bash "$here/recipe-pipeline.sh" model.freeze_token_embedding=true || exit 1
echo "=== $(date -u +%H:%M:%S) eval256"
ppo_v3_eval256 SFT-recipe-fe runs/sft-recipe-fe/policy runs/eval256-sft-recipe-fe
echo "=== $(date -u +%H:%M:%S) done"
