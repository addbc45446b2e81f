#!/bin/bash
# issue 14: the PPO v3 training command (frozen vision, T = 0.6 rollouts, critic warm-up, detached
# value head, 640 transitions per rollout, 160 per optimizer step, lr 4e-5), sourced by the scripts
# that run or resume v3 (from $SFT, default runs/sft-conv/policy). Expects PY and the working
# directory holding runs/.
ppo_v3() {  # $1 seed, $2 total env steps, $3 run dir (resumed from its last checkpoint), then
  # further overrides (a later value of the same key wins)
  $PY -m vla_torchrl.recipes.train --config-name train_cpu algo=ppo model=small env=maniskill_cpu \
    model.init_from=${SFT:-runs/sft-conv/policy} assets=required seed=$1 \
    model.freeze_vision=true model.temperature=0.6 algo.critic_warmup=5 \
    algo.critic_trains_backbone=false collector.steps_per_env=160 collector.total_env_steps=$2 \
    collector.eval_every=6400 collector.eval_episodes=16 optim.lr=4e-5 optim.minibatch_size=16 \
    optim.grad_accum_steps=10 logger.progress_bar=false run_dir=$3 "${@:4}" >> $3.log 2>&1
}
ppo_v3_extend() {  # $1 seed, $2 source run dir, $3 new run dir, $4 total env steps
  [ -d $3 ] || { cp -r $2 $3 && rm -rf $3/policy && cp $2.log $3.log; }
  [ -d $3/policy ] || ppo_v3 $1 $4 $3
}
ppo_v3_eval256() {  # $1 label, $2 policy dir, $3 output dir: 256 held-out ind episodes at T = 0.6
  [ -e $3/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
    'tasks=[ind]' 'seeds=[1000,1001,1002,1003]' episodes=64 temperature=0.6 videos=0 \
    assets=required out=$3 "policies={$1:$2}" > $3.log 2>&1
}
