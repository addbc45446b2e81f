#!/bin/bash
# issue 14, ninth session: the same DART demos (seeds 1-4, as data2x-pipeline.sh collects them)
# and the eighth session's objectives (flat + keypoint + orientation heads), with the vision
# towers' patchify layer replaced by a conv stem (ViTConfig.stem=conv); then the modular image
# policy on these towers, SFT of the VLA with all three auxiliary losses kept, and the paper's
# evaluation temperature on the 64 held-out episodes. Each stage is skipped when its output
# exists. Run from a directory with data/dart96-s{1..4} and the real assets; REPO = the checkout.
set -x
REPO=${REPO:-.}
PY=${PY:-$REPO/.venv/bin/python}
R=$REPO/docs/results/maniskill-cpu
D="data/dart96-s1 data/dart96-s2 data/dart96-s3 data/dart96-s4"
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p runs
stamp pretrain-conv
[ -e runs/pv-conv/done ] || { $PY $R/pretrain_vision.py --demos $D --out runs/pv-conv \
    --stem conv --steps ${PV_STEPS:-10000} --bs 64 --lr 1e-3 --eval-every 1000 \
    --keypoint-coef 1.0 --orientation-coef 1.0 > runs/pv-conv.log 2>&1 && touch runs/pv-conv/done; }
stamp modular-conv
[ -e runs/state-bc-conv/state_bc.pt ] || OMP_NUM_THREADS=1 $PY $R/state_bc_ceiling.py --demos $D \
    --out runs/state-bc-conv --episodes 64 --temperatures greedy,0.6 --perception runs/pv-conv \
    --perceive-orientation > runs/state-bc-conv.log 2>&1 &
stamp sft-conv
[ -e runs/sft-conv/last.pt ] || $PY $R/sft_experiment.py --demos $D \
    --out runs/sft-conv --steps ${SFT_STEPS:-2400} --lr 3e-4 --warmup 200 --eval-every-min 999 \
    --ls-init 1.0 --eval-episodes 64 --init runs/pv-conv/pretrained.pt --head runs/pv-conv/head.pt \
    --aux-privileged-coef 1.0 --aux-keypoint-coef 1.0 --aux-orientation-coef 1.0 \
    > runs/sft-conv.log 2>&1
stamp export
[ -d runs/sft-conv/policy ] || $PY $R/export_policy.py runs/sft-conv/last.pt runs/sft-conv/policy
wait
stamp eval-t06
[ -e runs/evalconv-t06/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
    'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 'policies={CONV:runs/sft-conv/policy}' \
    videos=0 assets=required out=runs/evalconv-t06 > runs/evalconv-t06.log 2>&1
stamp done
