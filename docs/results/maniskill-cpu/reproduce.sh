#!/bin/bash
# issue 14: the whole CPU-scale study of this directory in one command, from a fresh clone with
# the real assets (VLA_TORCHRL_ASSETS) and `make setup` done:
#
#     WORKDIR=/path/for/data-and-runs bash docs/results/maniskill-cpu/reproduce.sh
#
# expert DART demos -> vision pretraining with privileged labels -> SFT -> PPO v3 on 2 seeds ->
# SFT vs PPO on 256 held-out ind episodes -> SUITE table (16 tasks x 64 episodes). The stages and
# their wall-clock on the 2-core machine, each measured in the session named (the stages ran
# there as separate scripts, with these commands; this script chains them):
#   demos, 4 x 350 episodes, 2 collectors at a time      ~17 min   (data2x-pipeline.sh, 7th)
#   pretraining 10,000 steps + SFT 2,400 steps           ~57 min   (convstem-pipeline.sh, 9th)
#   PPO v3, 102,400 env steps per seed                   ~85 min x 2 (ppo-v3*.sh, 10th-12th)
#   256 held-out episodes x 3 policies                   ~20 min   (11th)
#   SUITE, 16 tasks x 64 episodes x 3 policies           ~80 min   (suite64.sh, 12th)
# About 6 hours in all. Every stage is skipped when its output exists, so a stopped run resumes
# (PPO also from its last per-iteration checkpoint).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
export REPO PY=${PY:-$REPO/.venv/bin/python}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
cd "${WORKDIR:-.}"
mkdir -p runs data
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
SFT=runs/sft-conv/policy

stamp demos
for pair in "1 2" "3 4"; do
  for s in $pair; do
    [ -d data/dart96-s$s ] || $PY -m vla_torchrl.recipes.collect episodes=350 seed=$s \
      env=maniskill_cpu privileged=true expert_noise=0.01 assets=required progress_bar=false \
      out=data/dart96-s$s > runs/collect-s$s.log 2>&1 &
  done
  wait
done

stamp pretraining-and-sft
bash "$REPO/docs/results/maniskill-cpu/convstem-pipeline.sh"

source "$REPO/docs/results/maniskill-cpu/ppo_v3.sh"  # ppo_v3 SEED ENV_STEPS RUN_DIR (from $SFT)
for seed in 0 1; do
  stamp ppo-s$seed
  [ -d runs/ppo3-s$seed-102k/policy ] || ppo_v3 $seed 102400 runs/ppo3-s$seed-102k
done

POLICIES="{SFT:$SFT,PPO-s0:runs/ppo3-s0-102k/policy,PPO-s1:runs/ppo3-s1-102k/policy}"
stamp eval256
[ -e runs/eval256/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'tasks=[ind]' 'seeds=[1000,1001,1002,1003]' episodes=64 temperature=0.6 videos=0 \
  assets=required out=runs/eval256 "policies=$POLICIES" > runs/eval256.log 2>&1
$PY "$REPO/docs/results/maniskill-cpu/paired_success.py" runs/eval256/episodes.jsonl \
  --baseline SFT --seed 1000 | tee runs/eval256-paired.md

stamp suite64
[ -e runs/suite64/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'seeds=[1000]' episodes=64 temperature=0.6 videos=0 assets=required out=runs/suite64 \
  "policies=$POLICIES" > runs/suite64.log 2>&1
# SFT vs RL over the two training seeds (mean (std) per task and axis)
[ -e runs/suite64/report-runs/report.md ] || $PY -m vla_torchrl.recipes.report \
  results=runs/suite64/episodes.jsonl out=runs/suite64/report-runs 'policies=[SFT,PPO-s0,PPO-s1]' \
  'runs={SFT:[SFT],RL:[PPO-s0,PPO-s1]}' > runs/suite64-report.log 2>&1
stamp done: runs/eval256/report/report.md runs/eval256-paired.md runs/suite64/report-runs/report.md
