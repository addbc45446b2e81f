#!/bin/bash
# issue 14, eleventh session: PPO v3 (ppo-v3.sh: frozen vision, T = 0.6 rollouts, critic warm-up,
# detached value head, 640 transitions per rollout, 160 per optimizer step, lr 4e-5) resumed to
# 102,400 env steps on seed 0 (~85 min of training, the 90-min budget) and to 51,200 on
# seed 1 (the session's time did not allow 102,400 for both), then SFT and the PPO policies on
# 256 held-out episodes (4 seeds x 64) at T = 0.6. v4 (lr 1e-4, 2 epochs, ppo-v4.sh) and
# GRPO(s) (grpo-s.sh) were tried first and both lowered the training success within 13,000 env
# steps.
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
ppo() {  # $1 seed, $2 total env steps, $3 run dir (resumed from its last checkpoint)
  $PY -m vla_torchrl.recipes.train --config-name train_cpu algo=ppo model=small env=maniskill_cpu \
    model.init_from=runs/sft-conv/policy assets=required seed=$1 \
    model.freeze_vision=true model.temperature=0.6 algo.critic_warmup=5 \
    algo.critic_trains_backbone=false collector.steps_per_env=160 collector.total_env_steps=$2 \
    collector.eval_every=6400 collector.eval_episodes=16 optim.lr=4e-5 optim.minibatch_size=16 \
    optim.grad_accum_steps=10 logger.progress_bar=false run_dir=$3 >> $3.log 2>&1
}
extend() {  # $1 seed, $2 source run dir, $3 new run dir, $4 total env steps
  [ -d $3 ] || { cp -r $2 $3 && rm -rf $3/policy && cp $2.log $3.log; }
  [ -d $3/policy ] || ppo $1 $4 $3
}
stamp s0; extend 0 runs/ppo3-s0-long runs/ppo3-s0-100k 102400
stamp s1; extend 1 runs/ppo3-s1 runs/ppo3-s1-51k 51200
stamp eval256
[ -e runs/eval256-ppo3/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'tasks=[ind]' 'seeds=[1000,1001,1002,1003]' episodes=64 temperature=0.6 videos=0 \
  assets=required out=runs/eval256-ppo3 \
  "policies={SFT:runs/sft-conv/policy,PPO-s0-51k:runs/ppo3-s0-long/policy,PPO-s1-51k:runs/ppo3-s1-51k/policy,PPO-s0-102k:runs/ppo3-s0-100k/policy}" \
  > runs/eval256-ppo3.log 2>&1
stamp done
