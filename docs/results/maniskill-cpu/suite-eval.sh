#!/bin/bash
# the conv-stem SFT policy on every SUITE task, 16 episodes each, at T=0.6 (ninth session)
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
${PY:-python} -m vla_torchrl.recipes.evaluate env=maniskill_cpu 'seeds=[1000]' episodes=16 \
  temperature=0.6 'policies={SFT:runs/sft-conv/policy}' videos=0 assets=required out=runs/evalsuite-t06 \
  > runs/evalsuite-t06.log 2>&1
echo "=== $(date -u +%H:%M:%S) done"
