#!/bin/bash
# the conv-stem SFT policy on every SUITE task, 16 episodes each, at T=0.6 (ninth session)
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
${PY:-python} -m vla_torchrl.recipes.evaluate env=maniskill_cpu 'seeds=[1000]' episodes=16 \
  temperature=0.6 'policies={SFT:runs/sft-conv/policy}' videos=0 assets=required out=runs/evalsuite-t06 \
  > runs/evalsuite-t06.log 2>&1
echo "=== $(date -u +%H:%M:%S) done"
# tenth session: the PPO v3 policy (seed 0, 51,200 env steps; ppo-v3.sh) on the same tasks and
# episodes (seed 1000, 16 each), for the SFT-vs-RL table
${PY:-python} -m vla_torchrl.recipes.evaluate env=maniskill_cpu 'seeds=[1000]' episodes=16 \
  temperature=0.6 'policies={PPO51k:runs/ppo3-s0-long/policy}' videos=0 assets=required \
  out=runs/evalsuite-ppo-t06 > runs/evalsuite-ppo-t06.log 2>&1
echo "=== $(date -u +%H:%M:%S) done"
