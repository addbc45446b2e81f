#!/bin/bash
# issue 14, seventh session: twice the DART demonstrations (seeds 1-4, 1,400 episodes), then the
# fourth/fifth session's pretraining and SFT settings unchanged (64 px, patch 8), and the
# state-based ceiling on the same data. Each stage is skipped when its output exists.
# Run from a directory with data/dart96-s{1,2} (see dagger-pipeline.sh) and the real assets
# ($VLA_TORCHRL_ASSETS); REPO points at the checkout.
set -x
REPO=${REPO:-.}
PY=${PY:-$REPO/.venv/bin/python}
R=$REPO/docs/results/maniskill-cpu
COLLECT="$PY -m vla_torchrl.recipes.collect"
D="data/dart96-s1 data/dart96-s2 data/dart96-s3 data/dart96-s4"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p runs
stamp collect-dart-3-4
for s in 3 4; do
  [ -d data/dart96-s$s ] || \
    $COLLECT episodes=350 seed=$s env=maniskill_cpu privileged=true expert_noise=0.01 \
      assets=required progress_bar=false out=data/dart96-s$s > runs/collect-s$s.log 2>&1 &
done
wait
stamp state-bc-2x
[ -e runs/state-bc-2x/state_bc.pt ] || OMP_NUM_THREADS=1 $PY $R/state_bc_ceiling.py \
    --demos $D --out runs/state-bc-2x --episodes 64 --temperatures greedy > runs/state-bc-2x.log 2>&1 &
stamp pretrain-2x
[ -e runs/pv-2x/pretrained.pt ] || $PY $R/pretrain_vision.py --demos $D \
    --out runs/pv-2x --steps 2500 --bs 64 --lr 1e-3 --eval-every 500 > runs/pv-2x.log 2>&1
stamp sft-2x
[ -e runs/sft-2x/last.pt ] || $PY $R/sft_experiment.py --demos $D \
    --out runs/sft-2x --steps 2400 --lr 3e-4 --warmup 200 --eval-every-min 999 --ls-init 1.0 \
    --eval-episodes 64 --init runs/pv-2x/pretrained.pt --head runs/pv-2x/head.pt \
    --aux-privileged-coef 1.0 > runs/sft-2x.log 2>&1
stamp export
[ -d runs/sft-2x/policy ] || $PY $R/export_policy.py runs/sft-2x/last.pt runs/sft-2x/policy
wait
stamp eval-t06
[ -e runs/eval2x-t06/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
    'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 'policies={DART2x:runs/sft-2x/policy}' \
    videos=0 assets=required out=runs/eval2x-t06 > runs/eval2x-t06.log 2>&1
stamp done
