#!/bin/bash
# issue 14, fifteenth session: the policy PPO v3 with 8 env workers (ppo-v3-8env.sh) held at the
# issue's 90-minute training budget: the last checkpoint logged at or before 5,400 s of the run's
# wall clock (metrics.jsonl elapsed_s; the run stopped there and resumes later), exported with
# vla_torchrl.training.checkpoint_policy, then on the 256 held-out ind episodes of eval256-ppo3
# (seeds 1000-1003 x 64, T = 0.6) and paired with SFT's episodes there.
# Needs the checkpoints kept by a copier (runs/ppo8-s<seed>-snapshots; the run keeps its last 2).
here=$(cd "$(dirname "$0")" && pwd)
cd "${WORKDIR:-.}"
PY=${PY:-python}
source "$here/ppo_v3.sh"
seed=${1:-0}; budget=${2:-5400}
run=runs/ppo8-s$seed; snaps=runs/ppo8-s$seed-snapshots; out=runs/ppo8-s$seed-90min
step=$($PY - "$run/metrics.jsonl" "$budget" <<'PYEOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(max(r["step"] for r in rows if r["elapsed_s"] <= float(sys.argv[2])))
PYEOF
)
ckpt=$(printf "step_%012d" "$step")
src=$snaps/$ckpt; [ -d $src ] || src=$run/checkpoints/$ckpt
echo "=== $(date -u +%H:%M:%S) seed $seed: $step env steps at <= $budget s ($src)"
[ -d $out/policy ] || $PY -m vla_torchrl.training.checkpoint_policy $src $out/policy || exit 1
ppo_v3_eval256 PPO8-s$seed-90min $out/policy runs/eval256-ppo8-s$seed-90min
$PY -m vla_torchrl.recipes.report \
  "results=[runs/eval256-ppo3/episodes.jsonl,runs/eval256-ppo8-s$seed-90min/episodes.jsonl]" \
  "policies=[SFT,PPO8-s$seed-90min]" out=runs/eval256-ppo8-s$seed-90min-report > /dev/null
$PY -m vla_torchrl.recipes.report \
  "results=[runs/eval256-ppo3/episodes.jsonl,runs/eval256-ppo8-s$seed-90min/episodes.jsonl]" \
  "policies=[SFT,PPO8-s$seed-90min]" 'seeds=[1000]' out=runs/eval64-ppo8-s$seed-90min-report > /dev/null
echo "=== $(date -u +%H:%M:%S) done"
