#!/bin/bash
# issue 14, eighth session: the vision towers pretrained with the patch-grid keypoint objective
# (pretrain_vision.py --keypoint-coef) on the seventh session's DART demos (seeds 1-4), then the
# fourth/fifth session's SFT settings with the keypoint loss kept as an auxiliary, then the
# paper's evaluation temperature on the 64 held-out episodes. Each stage is skipped when its
# output exists. Run from a directory with data/dart96-s{1..4} (see data2x-pipeline.sh) and the
# real assets ($VLA_TORCHRL_ASSETS); REPO points at the checkout.
set -x
REPO=${REPO:-.}
PY=${PY:-$REPO/.venv/bin/python}
R=$REPO/docs/results/maniskill-cpu
D="data/dart96-s1 data/dart96-s2 data/dart96-s3 data/dart96-s4"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p runs
stamp pretrain-kp
[ -e runs/pv-kp/pretrained.pt ] || $PY $R/pretrain_vision.py --demos $D \
    --out runs/pv-kp --steps 6000 --bs 64 --lr 1e-3 --eval-every 500 --keypoint-coef 1.0 \
    > runs/pv-kp.log 2>&1
stamp sft-kp
[ -e runs/sft-kp/last.pt ] || $PY $R/sft_experiment.py --demos $D \
    --out runs/sft-kp --steps ${SFT_STEPS:-2400} --lr 3e-4 --warmup 200 --eval-every-min 999 \
    --ls-init 1.0 --eval-episodes 64 --init runs/pv-kp/pretrained.pt --head runs/pv-kp/head.pt \
    --aux-privileged-coef 1.0 --aux-keypoint-coef 1.0 > runs/sft-kp.log 2>&1
stamp export
[ -d runs/sft-kp/policy ] || $PY $R/export_policy.py runs/sft-kp/last.pt runs/sft-kp/policy
stamp eval-t06
[ -e runs/evalkp-t06/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
    'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 'policies={KP:runs/sft-kp/policy}' \
    videos=0 assets=required out=runs/evalkp-t06 > runs/evalkp-t06.log 2>&1
stamp done
