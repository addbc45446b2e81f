#!/bin/bash
# issue 14, fourteenth session: the ninth session's pipeline (convstem-pipeline.sh: pretraining
# 10,000 steps, SFT ~2,400 steps, 64 held-out episodes at T = 0.6) through the package's own
# command lines instead of this folder's scripts:
#   vla-torchrl-pretrain-vision   the same objectives (position + keypoint + orientation), batch,
#                                 lr, warm-up and cosine floor as pretrain_vision.py
#   vla-torchrl-train algo=sft    from that policy, 4 epochs (~ the 2,400 steps of batch 32), with
#                                 the perception terms kept (WithPerceptionLoss; frozen heads on
#                                 16 separate demonstration frames per step, where
#                                 sft_experiment.py trained them on the SFT minibatch) and the
#                                 token embedding trained (the script froze it)
#   vla-torchrl-eval              the 64 held-out ind episodes (seed 1000) at T = 0.6
# Run from a directory with data/dart96-s{1..4} (data2x-pipeline.sh) and the real assets. Each
# stage is skipped when its output exists; pretraining resumes from its checkpoint. SFT_RUN
# (default runs/sft-recipe) names the SFT run; arguments are further SFT overrides (e.g.
# model.freeze_token_embedding=true, as sft-recipe-fe.sh).
cd "${WORKDIR:-.}"
PY=${PY:-python}
SFT_RUN=${SFT_RUN:-runs/sft-recipe}
D=data/dart96-s1,data/dart96-s2,data/dart96-s3,data/dart96-s4
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p runs
stamp pretrain
$PY -m vla_torchrl.recipes.pretrain_vision "demos=[$D]" out=runs/pv-recipe \
  steps=${PV_STEPS:-10000} batch_size=64 lr=1e-3 warmup_steps=100 min_lr_ratio=0.05 \
  eval_every=1000 progress_bar=false >> runs/pv-recipe.log 2>&1 || exit 1
stamp sft
[ -d $SFT_RUN/policy ] || $PY -m vla_torchrl.recipes.train --config-name train_cpu \
  algo=sft model=small env=maniskill_cpu model.init_from=runs/pv-recipe/policy assets=required \
  seed=0 "algo.demos=[$D]" algo.epochs=${SFT_EPOCHS:-4} algo.augment=true algo.val_fraction=0.05 \
  algo.eval_every_epochs=0 optim.lr=3e-4 optim.lr_schedule=cosine optim.warmup_steps=200 \
  optim.min_lr_ratio=0.1 optim.minibatch_size=32 optim.grad_accum_steps=1 \
  optim.weight_decay=0.01 'optim.betas=[0.9,0.95]' optim.max_grad_norm=1.0 \
  algo.loss._target_=vla_torchrl.training.perception_anchor.WithPerceptionLoss \
  "+algo.loss.demos=[$D]" +algo.loss.heads=runs/pv-recipe/heads.pt \
  +algo.loss.perception_coeff=1.0 +algo.loss.perception_batch_size=16 \
  logger.progress_bar=false run_dir=$SFT_RUN "$@" >> $SFT_RUN.log 2>&1 || exit 1
stamp eval
E=runs/eval-$(basename $SFT_RUN)
[ -e $E/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate \
  env=maniskill_cpu 'tasks=[ind]' 'seeds=[1000]' episodes=64 temperature=0.6 videos=0 \
  assets=required out=$E "policies={SFT-recipe:$SFT_RUN/policy}" > $E.log 2>&1
stamp done
