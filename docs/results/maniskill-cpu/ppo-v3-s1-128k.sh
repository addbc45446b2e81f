#!/bin/bash
# issue 14, fourteenth session: PPO v3 seed 1 resumed from 102,400 to 128,000 env steps (as seed 0
# in ppo-v3-s0-128k.sh), then that policy on the same 256 held-out episodes (seeds 1000-1003 x 64,
# T = 0.6) as eval256-ppo3; pair with SFT there through
# `vla-torchrl-report 'results=[runs/eval256-ppo3/episodes.jsonl,runs/eval256-ppo3-s1-128k/episodes.jsonl]'`.
here=$(cd "$(dirname "$0")" && pwd)
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
source "$here/ppo_v3.sh"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp s1-128k; ppo_v3_extend 1 runs/ppo3-s1-100k runs/ppo3-s1-128k 128000
stamp eval256; ppo_v3_eval256 PPO-s1-128k runs/ppo3-s1-128k/policy runs/eval256-ppo3-s1-128k
stamp done
