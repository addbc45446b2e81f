#!/bin/bash
# issue 14, seventh session: the fourth/fifth session's DART pipeline with the towers reading the
# 96 px frame at patch 12 (still 64 patches, about the same cost) instead of its 64 px resize,
# and beside it the state-based BC ceiling (state_bc_ceiling.py) on the same demos and scenes.
# Each stage is skipped when its output exists (resume by re-running this script).
# Run from a directory holding data/dart96-s{1,2} (the DART commands of dagger-pipeline.sh),
# with the real assets ($VLA_TORCHRL_ASSETS); REPO points at the checkout.
set -x
REPO=${REPO:-.}
PY=${PY:-$REPO/.venv/bin/python}
R=$REPO/docs/results/maniskill-cpu
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p runs
stamp state-bc
[ -e runs/state-bc/state_bc.pt ] || OMP_NUM_THREADS=1 $PY $R/state_bc_ceiling.py \
    --demos data/dart96-s1 data/dart96-s2 --out runs/state-bc --episodes 64 > runs/state-bc.log 2>&1 &
stamp pretrain-96
[ -e runs/pv-96/pretrained.pt ] || $PY $R/pretrain_vision.py --demos data/dart96-s1 data/dart96-s2 \
    --out runs/pv-96 --steps 2500 --bs 64 --lr 1e-3 --eval-every 500 --img 96 --patch 12 > runs/pv-96.log 2>&1
stamp sft-96
[ -e runs/sft-96/last.pt ] || $PY $R/sft_experiment.py --demos data/dart96-s1 data/dart96-s2 \
    --out runs/sft-96 --steps 2400 --lr 3e-4 --warmup 200 --eval-every-min 999 --ls-init 1.0 \
    --eval-episodes 64 --img 96 --patch 12 --init runs/pv-96/pretrained.pt --head runs/pv-96/head.pt \
    --aux-privileged-coef 1.0 > runs/sft-96.log 2>&1
stamp export
[ -d runs/sft-96/policy ] || $PY $R/export_policy.py runs/sft-96/last.pt runs/sft-96/policy
wait
stamp eval-t06
[ -e runs/eval96-t06/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
    'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 'policies={DART96:runs/sft-96/policy}' \
    videos=0 assets=required out=runs/eval96-t06 > runs/eval96-t06.log 2>&1
stamp done
