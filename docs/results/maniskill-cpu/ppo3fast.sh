#!/bin/bash
# (run dir named ppo4-res96b-s0 on the machine; its files here are named ppo3fast-res96b: PPO v3 settings, the faster env)
# twentieth session: PPO v3 seed 0 from the 96 px control policy with the faster CPU env
# (parked assets hidden from the renderer, ParallelEnv through pipes), evaluations every 25,600
# steps, to 128,000 env steps or 19:40 UTC (resumable); then the 64 episodes
cd /work
export PYTHONPATH=/work/pipe20b PY=/work/main/.venv/bin/python
source /work/pipe20b/docs/results/maniskill-cpu/ppo_v3.sh
R=runs/ppo4-res96b-s0
deadline=$(date -u -d '19:40' +%s); left=$(( deadline - $(date -u +%s) ))
echo "=== $(date -u +%H:%M:%S) s0 start, ${left}s left"
timeout --kill-after=60 $left bash -c "source /work/pipe20b/docs/results/maniskill-cpu/ppo_v3.sh; SFT=runs/sft-res96-b/policy ppo_v3 0 128000 $R collector.eval_every=25600"
echo "=== $(date -u +%H:%M:%S) s0 exit $?"
P=$R/policy
if [ ! -d $P ]; then
  last=$(ls -d $R/checkpoints/step_* | sort | tail -1); P=$R-at-deadline/policy
  $PY -m vla_torchrl.training.checkpoint_policy $last $P
  echo "=== $(date -u +%H:%M:%S) exported $last"
fi
$PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu 'tasks=[ind]' 'seeds=[1000]' episodes=64 \
  temperature=0.6 videos=0 assets=required out=runs/eval64-ppo4-res96b-s0 "policies={ppo4-s0:$P}" \
  > runs/eval64-ppo4-res96b-s0.log 2>&1
echo "=== $(date -u +%H:%M:%S) eval exit $?"
