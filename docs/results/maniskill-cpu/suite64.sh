#!/bin/bash
# issue 14, twelfth session, after ppo-v3-s1-102k.sh:
# 1. does the 40-step limit cut placements short? SFT and PPO v3 seed 0 (102,400 env steps) on the
#    issue's 64 held-out episodes (seed 1000) with 80-step episodes (the paper's limit).
# 2. the SFT-vs-RL SUITE table the issue asks for: SFT and both PPO v3 seeds at 102,400 env steps
#    on all 16 SUITE tasks, 64 episodes each (seed 1000), T = 0.6, the same episodes for all three.
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp steps80
[ -e runs/eval80-ind/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 videos=0 env.max_episode_steps=80 \
  assets=required out=runs/eval80-ind \
  "policies={SFT:runs/sft-conv/policy,PPO-s0-102k:runs/ppo3-s0-100k/policy}" \
  > runs/eval80-ind.log 2>&1
stamp suite64
[ -e runs/suite64/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'seeds=[1000]' episodes=64 temperature=0.6 videos=0 assets=required out=runs/suite64 \
  "policies={SFT:runs/sft-conv/policy,PPO-s0:runs/ppo3-s0-100k/policy,PPO-s1:runs/ppo3-s1-100k/policy}" \
  > runs/suite64.log 2>&1
stamp done
