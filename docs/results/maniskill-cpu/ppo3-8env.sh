#!/bin/bash
# (run dirs named ppo5-res96b-s{0,1} on the machine; files here are named ppo5-res96b)
# twenty-first session: PPO v3 from the 96 px control policy (runs/sft-res96-b/policy) with 8 env
# workers x 80 steps (the same 640 transitions per rollout as 4 x 160), the periodic evaluation
# on the training env (no evaluation workers: 8 training workers fit in 24 GB), evaluations
# every 25,600 env steps, stopped by a 90-minute wall-clock deadline (resumable: a checkpoint
# every iteration); then the last checkpoint exported and evaluated on the 256 held-out episodes
# (seed 1000 = the issue's 64). Run from the directory holding runs/, with PY and PYTHONPATH set.
source "$(dirname "$0")/ppo_v3.sh"
seed=${1:-0}
budget=${2:-5400}  # seconds of wall-clock; on a resume, 5400 minus the elapsed_s already logged
R=runs/ppo5-res96b-s$seed
timeout --kill-after=60 $budget bash -c "source $(dirname "$0")/ppo_v3.sh; SFT=runs/sft-res96-b/policy ppo_v3 $seed 192000 $R collector.eval_every=25600 env.num_envs=8 collector.steps_per_env=80 collector.eval_env=training"
P=$R/policy
if [ ! -d $P ]; then
  last=$(ls -d $R/checkpoints/step_* | sort | tail -1); P=$R-at-deadline/policy
  [ -d $P ] || $PY -m vla_torchrl.training.checkpoint_policy $last $P
fi
ppo_v3_eval256 ppo5-s$seed $P runs/eval256-ppo5-res96b-s$seed
$PY -m vla_torchrl.recipes.report \
  "results=[runs/eval256-sft-res96-b/episodes.jsonl,runs/eval256-ppo5-res96b-s$seed/episodes.jsonl]" \
  "policies=[SFT-res96-b,ppo5-s$seed]" out=runs/eval256-ppo5-s$seed-paired > /dev/null
$PY -m vla_torchrl.recipes.report \
  "results=[runs/eval256-sft-res96-b/episodes.jsonl,runs/eval256-ppo5-res96b-s$seed/episodes.jsonl]" \
  "policies=[SFT-res96-b,ppo5-s$seed]" 'seeds=[1000]' out=runs/eval64-ppo5-s$seed-paired > /dev/null
