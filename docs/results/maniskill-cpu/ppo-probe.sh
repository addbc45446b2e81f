#!/bin/bash
# PPO probe from the conv-stem SFT policy (issue 14, ninth session); the first eval failed on the
# policy-reload bug fixed in this session, and was rerun after repairing policy.json by hand
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp ppo
$PY -m vla_torchrl.recipes.train --config-name train_cpu algo=ppo model=small env=maniskill_cpu \
  model.init_from=runs/sft-conv/policy assets=required seed=0 \
  collector.steps_per_env=40 collector.total_env_steps=12800 collector.eval_every=6400 \
  collector.eval_episodes=16 optim.lr=2e-5 optim.minibatch_size=16 optim.grad_accum_steps=2 \
  run_dir=runs/ppo-conv-s0 > runs/ppo-conv-s0.log 2>&1
stamp eval
$PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu 'tasks=[ind]' 'seeds=[1000]' episodes=64 \
  temperature=0.6 'policies={SFT:runs/sft-conv/policy,PPO:runs/ppo-conv-s0/policy}' videos=0 \
  assets=required out=runs/evalppo-t06 > runs/evalppo-t06.log 2>&1
stamp done
