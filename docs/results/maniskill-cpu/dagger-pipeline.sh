#!/bin/bash
# issue 14, fifth session: DART demos -> pretraining -> SFT -> DAgger round -> SFT on the aggregate.
# Each stage is skipped when its output exists (resume by re-running this script).
# Run from the repository root with the real assets (../shared/assets or $VLA_TORCHRL_ASSETS);
# writes data/ and runs/ there. ~2 h 20 min on 2 idle CPU cores (measured 2026-12-03).
set -x
PY=.venv/bin/python
COLLECT="$PY -m vla_torchrl.recipes.collect"
R=docs/results/maniskill-cpu
mkdir -p data runs
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
stamp collect-dart
for s in 1 2; do
  [ -e data/dart96-s$s/meta.json ] || [ -d data/dart96-s$s ] || \
    $COLLECT episodes=350 seed=$s env=maniskill_cpu privileged=true expert_noise=0.01 \
      assets=required progress_bar=false out=data/dart96-s$s > runs/collect-s$s.log 2>&1 &
done
wait
stamp pretrain
[ -e runs/pv-d/pretrained.pt ] || $PY $R/pretrain_vision.py --demos data/dart96-s1 data/dart96-s2 \
    --out runs/pv-d --steps 2500 --bs 64 --lr 1e-3 --eval-every 500 > runs/pv-d.log 2>&1
stamp sft
[ -e runs/sft-d/last.pt ] || $PY $R/sft_experiment.py --demos data/dart96-s1 data/dart96-s2 \
    --out runs/sft-d --steps 2400 --lr 3e-4 --warmup 200 --eval-every-min 999 --ls-init 1.0 \
    --eval-episodes 64 --init runs/pv-d/pretrained.pt --head runs/pv-d/head.pt \
    --aux-privileged-coef 1.0 > runs/sft-d.log 2>&1
stamp export
[ -d runs/sft-d/policy ] || $PY $R/export_policy.py runs/sft-d/last.pt runs/sft-d/policy
stamp dagger-collect
for s in 3 4; do
  [ -d data/dagger1-s$s ] || \
    $COLLECT episodes=100 seed=$s env=maniskill_cpu privileged=true policy=runs/sft-d/policy \
      expert_share=0.3 assets=required progress_bar=false out=data/dagger1-s$s > runs/dagger1-s$s.log 2>&1 &
done
wait
stamp sft-dagger
[ -e runs/sft-g/last.pt ] || $PY $R/sft_experiment.py \
    --demos data/dart96-s1 data/dart96-s2 data/dagger1-s3 data/dagger1-s4 \
    --out runs/sft-g --steps 1200 --lr 1.5e-4 --warmup 50 --eval-every-min 999 --ls-init 1.0 \
    --eval-episodes 64 --init runs/sft-d/last.pt --head runs/pv-d/head.pt \
    --aux-privileged-coef 1.0 > runs/sft-g.log 2>&1
stamp export-g
[ -d runs/sft-g/policy ] || $PY $R/export_policy.py runs/sft-g/last.pt runs/sft-g/policy
stamp done
