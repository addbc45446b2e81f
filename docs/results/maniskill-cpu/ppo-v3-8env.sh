#!/bin/bash
# issue 14, fifteenth session: PPO v3 (ppo_v3.sh) with 8 ParallelEnv workers x 80 steps instead of
# 4 x 160 (the same 640 transitions per rollout; benchmarked at 28.4 vs 24.4 env steps/s), to
# 128,000 env steps from the SFT policy, to test whether v3 fits the issue's 90-minute budget. Then
# the policy on the 256 held-out ind episodes of eval256-ppo3 (seeds 1000-1003 x 64, T = 0.6).
# Seeds as arguments (default: 0 1); a rerun resumes each run from its last checkpoint.
# The periodic evaluation gets 3 workers (collector.eval_num_envs): its env stays open beside the
# training env, and 8 + 8 ManiSkill workers (~1.5 GB each) ran the 24 GB machine out of memory at
# the first evaluation (runs/ppo8-s0-oom).
here=$(cd "$(dirname "$0")" && pwd)
cd "${WORKDIR:-.}"  # the directory holding runs/ (as convstem-pipeline.sh)
PY=${PY:-python}
source "$here/ppo_v3.sh"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(0 1)
for seed in "${seeds[@]}"; do
  run=runs/ppo8-s$seed
  stamp "ppo8 seed $seed"
  [ -d $run/policy ] || ppo_v3 $seed 128000 $run env.num_envs=8 collector.steps_per_env=80 \
    collector.eval_num_envs=3
  stamp "eval256 seed $seed"
  ppo_v3_eval256 PPO8-s$seed $run/policy runs/eval256-ppo8-s$seed
done
stamp done
