#!/bin/bash
# issue 14, tenth session: PPO from the ninth session's SFT policy (runs/sft-conv/policy) with the
# stabilisers added this session. v2 (first try, stopped at 13,440 env steps): frozen vision, T=0.6
# rollouts, critic warm-up 10 iterations, 4 envs x 80 steps, minibatch 16 x 2, lr 2e-5.
# v3 (below): also a detached value head, 4 envs x 160 steps (640 transitions per rollout) and
# 160 transitions per optimizer step (16 x 10), lr 4e-5, warm-up 5 iterations. Seed 0 ran to
# 25,600 env steps, was evaluated, then its run directory was copied and resumed to 51,200.
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
ppo() {  # $1 seed, $2 total env steps, $3 run dir
  $PY -m vla_torchrl.recipes.train --config-name train_cpu algo=ppo model=small env=maniskill_cpu \
    model.init_from=runs/sft-conv/policy assets=required seed=$1 \
    model.freeze_vision=true model.temperature=0.6 algo.critic_warmup=5 \
    algo.critic_trains_backbone=false collector.steps_per_env=160 collector.total_env_steps=$2 \
    collector.eval_every=6400 collector.eval_episodes=16 optim.lr=4e-5 optim.minibatch_size=16 \
    optim.grad_accum_steps=10 logger.progress_bar=false run_dir=$3 > $3.log 2>&1
}
ev() {  # $1 out dir, $2 policies: the 64 held-out ind episodes at the paper's T = 0.6
  $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu 'tasks=[ind]' 'seeds=[1000]' episodes=64 \
    temperature=0.6 "policies=$2" videos=0 assets=required out=runs/$1 > runs/$1.log 2>&1
}
stamp ppo3-s0;      ppo 0 25600 runs/ppo3-s0
stamp eval;         ev evalppo3-s0 "{SFT:runs/sft-conv/policy,PPO:runs/ppo3-s0/policy}"
stamp ppo3-s0-long; cp -r runs/ppo3-s0 runs/ppo3-s0-long && rm -rf runs/ppo3-s0-long/policy
ppo 0 51200 runs/ppo3-s0-long
stamp eval;         ev evalppo3-s0-long "{SFT:runs/sft-conv/policy,PPO51k:runs/ppo3-s0-long/policy}"
stamp ppo3-s1;      ppo 1 25600 runs/ppo3-s1
stamp eval;         ev evalppo3-s1 "{SFT:runs/sft-conv/policy,PPO:runs/ppo3-s1/policy}"
stamp done
