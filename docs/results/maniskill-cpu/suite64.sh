#!/bin/bash
# issue 14: the SFT-vs-RL SUITE table the issue asks for: SFT and both PPO v3 seeds at 102,400
# env steps on all 16 SUITE tasks, 64 episodes each (seed 1000), T = 0.6, the same episodes for
# all three (~80 min on 2 cores). The twelfth session ran its first 4 tasks (ind, table,
# texture-w, texture-s; 21 min) and stopped; the complete results are suite64-episodes.jsonl. To
# resume a stopped run, copy its file to runs/suite64/episodes.jsonl and run this again: complete (policy, task, seed) groups
# are skipped. The thirteenth session resumed it (a new env per group from then on, and the
# instruct task's partial-step fix) and added the report over training runs (RL = both seeds).
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp suite64
[ -e runs/suite64/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'seeds=[1000]' episodes=64 temperature=0.6 videos=0 assets=required out=runs/suite64 \
  "policies={SFT:runs/sft-conv/policy,PPO-s0:runs/ppo3-s0-100k/policy,PPO-s1:runs/ppo3-s1-100k/policy}" \
  > runs/suite64.log 2>&1
stamp report-runs
[ -e runs/suite64/report-runs/report.md ] || $PY -m vla_torchrl.recipes.report \
  results=runs/suite64/episodes.jsonl out=runs/suite64/report-runs 'policies=[SFT,PPO-s0,PPO-s1]' \
  'runs={SFT:[SFT],RL:[PPO-s0,PPO-s1]}' > runs/suite64-report.log 2>&1
stamp done
