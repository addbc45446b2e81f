#!/bin/bash
# issue 14, eighth session, second round: the keypoint towers (runs/pv-kp of keypoint-pipeline.sh)
# trained on with an orientation head (gripper rotation, object yaw) for 5,000 more steps; the
# modular image policy (state_bc_ceiling.py) reading every input off the frame; SFT with all
# three auxiliary losses kept; the paper's evaluation temperature on the 64 held-out episodes.
# Each stage is skipped when its output exists. Run from the directory of keypoint-pipeline.sh.
set -x
REPO=${REPO:-.}
PY=${PY:-$REPO/.venv/bin/python}
R=$REPO/docs/results/maniskill-cpu
D="data/dart96-s1 data/dart96-s2 data/dart96-s3 data/dart96-s4"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p runs
stamp pretrain-kpo
[ -e runs/pv-kpo/pretrained.pt ] || $PY $R/pretrain_vision.py --demos $D --out runs/pv-kpo \
    --init runs/pv-kp/pretrained.pt --steps 5000 --bs 64 --lr 5e-4 --eval-every 1000 \
    --keypoint-coef 1.0 --orientation-coef 1.0 > runs/pv-kpo.log 2>&1
stamp modular-kpo
[ -e runs/state-bc-kpo/state_bc.pt ] || OMP_NUM_THREADS=1 $PY $R/state_bc_ceiling.py --demos $D \
    --out runs/state-bc-kpo --episodes 64 --temperatures greedy,0.6 --perception runs/pv-kpo \
    --perceive-orientation > runs/state-bc-kpo.log 2>&1 &
stamp sft-kpo
[ -e runs/sft-kpo/last.pt ] || $PY $R/sft_experiment.py --demos $D \
    --out runs/sft-kpo --steps ${SFT_STEPS:-2400} --lr 3e-4 --warmup 200 --eval-every-min 12 \
    --ls-init 1.0 --eval-episodes 64 --init runs/pv-kpo/pretrained.pt --head runs/pv-kpo/head.pt \
    --aux-privileged-coef 1.0 --aux-keypoint-coef 1.0 --aux-orientation-coef 1.0 \
    > runs/sft-kpo.log 2>&1
stamp export
[ -d runs/sft-kpo/policy ] || $PY $R/export_policy.py runs/sft-kpo/last.pt runs/sft-kpo/policy
wait
stamp eval-t06
[ -e runs/evalkpo-t06/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
    'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 'policies={KPO:runs/sft-kpo/policy}' \
    videos=0 assets=required out=runs/evalkpo-t06 > runs/evalkpo-t06.log 2>&1
stamp done
