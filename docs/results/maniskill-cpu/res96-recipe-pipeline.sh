#!/bin/bash
# issue 14, sixteenth session: recipe-pipeline.sh with the towers reading the whole 96 px camera
# frame instead of its 64 px resize. model.arch.image_size=96 with patch 12 (the conv stem's new
# stride-3 block) keeps the 8 x 8 token grid, so the LLM, the SFT and the PPO cost what they did;
# only the stems see 2.25x the pixels (+19% for a forward + backward of the towers). Everything
# else is recipe-pipeline.sh: the same DART demos (collected at 96 px), 10,000 pretraining steps,
# SFT 4 epochs with the perception terms, then the 256 held-out ind episodes (seeds 1000-1003,
# the 64 are seed 1000) at T = 0.6.
# Run from a directory with data/dart96-s{1..4} and the real assets; each stage is skipped when
# its output exists, pretraining resumes from its checkpoint. SFT_RUN / SFT_SEED name another
# SFT run on the same pretraining (e.g. SFT_RUN=runs/sft-res96-s1 SFT_SEED=1).
# Seventeenth session: SCENES (comma-separated folders) adds them as the pretraining's
# scene_frames (training only; e.g. SCENES=data/reset96-s100,data/reset96-s101, one reset frame
# per scene), LABEL names the policy in the evaluation (default SFT-res96).
# Eighteenth session: SCENE_SHARE (e.g. 0.15) draws that share of each pretraining minibatch from
# the scene frames (default: uniform over all training frames, 46% for the two reset sets).
cd "${WORKDIR:-.}"
PY=${PY:-python}
PV=${PV_RUN:-runs/pv-res96}
SFT_RUN=${SFT_RUN:-runs/sft-res96}
D=data/dart96-s1,data/dart96-s2,data/dart96-s3,data/dart96-s4
ARCH=(model.arch.image_size=96 'model.arch.dino={patch_size:12}' 'model.arch.siglip={patch_size:12}')
stamp() { echo "=== $(date -u +%H:%M:%S) $*"; }
mkdir -p runs
stamp pretrain
[ -d $PV/policy ] && [ -e $PV/done ] || {
  $PY -m vla_torchrl.recipes.pretrain_vision "demos=[$D]" out=$PV "${ARCH[@]}" \
    steps=${PV_STEPS:-10000} batch_size=64 lr=1e-3 warmup_steps=100 min_lr_ratio=0.05 \
    eval_every=1000 progress_bar=false ${SCENES:+"scene_frames=[$SCENES]"} ${SCENE_SHARE:+scene_share=$SCENE_SHARE} >> $PV.log 2>&1 \
    && touch $PV/done
} || exit 1
stamp sft
# the architecture comes from the pretrained policy (model.init_from)
[ -d $SFT_RUN/policy ] || $PY -m vla_torchrl.recipes.train --config-name train_cpu \
  algo=sft model=small env=maniskill_cpu model.init_from=$PV/policy assets=required \
  seed=${SFT_SEED:-0} "algo.demos=[$D]" algo.epochs=${SFT_EPOCHS:-4} algo.augment=true algo.val_fraction=0.05 \
  algo.eval_every_epochs=0 optim.lr=3e-4 optim.lr_schedule=cosine optim.warmup_steps=200 \
  optim.min_lr_ratio=0.1 optim.minibatch_size=32 optim.grad_accum_steps=1 \
  optim.weight_decay=0.01 'optim.betas=[0.9,0.95]' optim.max_grad_norm=1.0 \
  algo.loss._target_=vla_torchrl.training.perception_anchor.WithPerceptionLoss \
  "+algo.loss.demos=[$D]" +algo.loss.heads=$PV/heads.pt \
  +algo.loss.perception_coeff=1.0 +algo.loss.perception_batch_size=16 \
  logger.progress_bar=false run_dir=$SFT_RUN "$@" >> $SFT_RUN.log 2>&1 || exit 1
stamp eval256
E=runs/eval256-$(basename $SFT_RUN)
[ -e $E/report/report.md ] || $PY -m vla_torchrl.recipes.evaluate env=maniskill_cpu \
  'tasks=[ind]' 'seeds=[1000,1001,1002,1003]' episodes=64 temperature=0.6 videos=0 \
  assets=required out=$E "policies={${LABEL:-SFT-res96}:$SFT_RUN/policy}" > $E.log 2>&1
stamp done
