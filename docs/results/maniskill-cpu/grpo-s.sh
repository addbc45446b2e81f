#!/bin/bash
# issue 14, eleventh session: GRPO(s) (Sec. 4.1, the paper's process-supervision advantages,
# Eq. 3-4) from the ninth session's SFT policy, after PPO v4 (ppo-v4.sh: lr 1e-4, 2 epochs)
# collapsed at its first policy updates (approx. KL 0.1-0.3, clip fraction 0.3-0.5). PPO v3's
# critic explained 10-20% of the returns at best; GRPO(s) needs no critic: each group is the 4
# envs playing the same initial state, so the scene's difficulty cancels out of the advantage.
# Kept from v3: frozen vision, T = 0.6 rollouts, 640 transitions per rollout (4 groups of 4
# fixed-length 40-step episodes), 160 per optimizer step, lr 4e-5, 1 epoch.
# Usage: WORKDIR=/work PY=... grpo-s.sh SEED [TOTAL_ENV_STEPS]
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
SEED=${1:-0}
STEPS=${2:-25600}
RUN=runs/grpos-s$SEED
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp grpos-s$SEED
$PY -m vla_torchrl.recipes.train --config-name train_cpu algo=grpo-s model=small env=maniskill_cpu \
  model.init_from=runs/sft-conv/policy assets=required seed=$SEED \
  model.freeze_vision=true model.temperature=0.6 algo.group_size=4 \
  collector.steps_per_env=160 collector.total_env_steps=$STEPS collector.eval_every=6400 \
  collector.eval_episodes=16 optim.lr=4e-5 optim.minibatch_size=16 optim.grad_accum_steps=10 \
  logger.progress_bar=false run_dir=$RUN > $RUN.log 2>&1
stamp done
