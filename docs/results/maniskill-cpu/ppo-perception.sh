#!/bin/bash
# issue 14, twelfth session, after ppo-v3-s1-102k.sh:
# 1. does the 40-step limit cut placements short? SFT and PPO v3 seed 0 (102,400 env steps) on the
#    issue's 64 held-out episodes (seed 1000) with 80-step episodes (the paper's limit).
# 2. PPO v3 with the vision towers unfrozen and anchored by the perception losses on the DART
#    demos (ppo_perception.py, weight 0.3: its gradient norm is ~4-6 against PPO's ~11, so the
#    global clip at 10 shrinks PPO's step about as much as in v3), seed 0, 51,200 env steps, then
#    on the 256 held-out episodes of eval256-ppo3 (compare PPO v3 at 51,200: 30.1% and 31.2%).
cd "${WORKDIR:-.}"  # the directory holding runs/ and data/ (as convstem-pipeline.sh)
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp steps80
[ -e runs/eval80-ind/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 videos=0 env.max_episode_steps=80 \
  assets=required out=runs/eval80-ind \
  "policies={SFT:runs/sft-conv/policy,PPO-s0-102k:runs/ppo3-s0-100k/policy}" \
  > runs/eval80-ind.log 2>&1
stamp ppo-perception
[ -d runs/ppop-s0/policy ] || PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} $PY -m vla_torchrl.recipes.train \
  --config-name train_cpu algo=ppo model=small env=maniskill_cpu \
  model.init_from=runs/sft-conv/policy assets=required seed=0 \
  model.freeze_vision=false model.temperature=0.6 algo.critic_warmup=5 \
  algo.critic_trains_backbone=false collector.steps_per_env=160 collector.total_env_steps=51200 \
  collector.eval_every=6400 collector.eval_episodes=16 optim.lr=4e-5 optim.minibatch_size=16 \
  optim.grad_accum_steps=10 logger.progress_bar=false run_dir=runs/ppop-s0 \
  algo.loss._target_=ppo_perception.PPOWithPerceptionLoss \
  '+algo.loss.demos=[data/dart96-s1,data/dart96-s2,data/dart96-s3,data/dart96-s4]' \
  +algo.loss.heads=runs/sft-conv/head.pt +algo.loss.perception_coeff=0.3 >> runs/ppop-s0.log 2>&1
stamp eval256
[ -e runs/eval256-ppop/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'tasks=[ind]' 'seeds=[1000,1001,1002,1003]' episodes=64 temperature=0.6 videos=0 \
  assets=required out=runs/eval256-ppop "policies={PPO-perception-s0-51k:runs/ppop-s0/policy}" \
  > runs/eval256-ppop.log 2>&1
stamp done
