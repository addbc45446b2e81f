#!/bin/bash
# issue 14, thirteenth session: PPO v3 seed 0 resumed from 102,400 to 128,000 env steps (past
# the 90-min budget: does the weaker seed keep climbing?), then that policy on the same
# 256 held-out episodes (seeds 1000-1003 x 64, T = 0.6) as eval256-ppo3; pair with SFT there
# through `vla-torchrl-report 'results=[runs/eval256-ppo3/episodes.jsonl,runs/eval256-ppo3-s0-128k/episodes.jsonl]'`.
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp s0-128k
if [ ! -d runs/ppo3-s0-128k/policy ]; then
  [ -d runs/ppo3-s0-128k ] || { cp -r runs/ppo3-s0-100k runs/ppo3-s0-128k && rm -rf runs/ppo3-s0-128k/policy \
    && cp runs/ppo3-s0-100k.log runs/ppo3-s0-128k.log; }
  $PY -m vla_torchrl.recipes.train --config-name train_cpu algo=ppo model=small env=maniskill_cpu \
    model.init_from=runs/sft-conv/policy assets=required seed=0 \
    model.freeze_vision=true model.temperature=0.6 algo.critic_warmup=5 \
    algo.critic_trains_backbone=false collector.steps_per_env=160 collector.total_env_steps=128000 \
    collector.eval_every=6400 collector.eval_episodes=16 optim.lr=4e-5 optim.minibatch_size=16 \
    optim.grad_accum_steps=10 logger.progress_bar=false run_dir=runs/ppo3-s0-128k \
    >> runs/ppo3-s0-128k.log 2>&1
fi
stamp eval256
[ -e runs/eval256-ppo3-s0-128k/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'tasks=[ind]' 'seeds=[1000,1001,1002,1003]' episodes=64 temperature=0.6 videos=0 \
  assets=required out=runs/eval256-ppo3-s0-128k "policies={PPO-s0-128k:runs/ppo3-s0-128k/policy}" \
  > runs/eval256-ppo3-s0-128k.log 2>&1
stamp done
