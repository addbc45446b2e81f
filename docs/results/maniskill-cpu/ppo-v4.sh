#!/bin/bash
# issue 14, eleventh session: PPO v4 from the ninth session's SFT policy (runs/sft-conv/policy).
# v3 (ppo-v3.sh) held the SFT level but its training success stayed flat at 0.28-0.30, with an
# approx. KL of only 0.006-0.010 per update. v4 keeps v3's stabilisers (frozen vision, T = 0.6
# rollouts, critic warm-up 5 iterations, detached value head, 640 transitions per rollout, 160
# per optimizer step) and moves faster: lr 1e-4 (the paper's LoRA lr) and 2 epochs per rollout.
# Usage: WORKDIR=/work PY=... ppo-v4.sh SEED [TOTAL_ENV_STEPS]
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
SEED=${1:-0}
STEPS=${2:-38400}
RUN=runs/ppo4-s$SEED
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp ppo4-s$SEED
$PY -m vla_torchrl.recipes.train --config-name train_cpu algo=ppo model=small env=maniskill_cpu \
  model.init_from=runs/sft-conv/policy assets=required seed=$SEED \
  model.freeze_vision=true model.temperature=0.6 algo.critic_warmup=5 \
  algo.critic_trains_backbone=false algo.epochs=2 collector.steps_per_env=160 \
  collector.total_env_steps=$STEPS collector.eval_every=6400 collector.eval_episodes=16 \
  optim.lr=1e-4 optim.minibatch_size=16 optim.grad_accum_steps=10 logger.progress_bar=false \
  run_dir=$RUN > $RUN.log 2>&1
stamp done
