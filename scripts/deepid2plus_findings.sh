#!/usr/bin/env bash
# The DeepID2+ findings on real LFW (issue 23; docs/ANALYSES.md): DeepID2 and DeepID2+ (both with
# BatchNorm, one budget), raw pixels and LBP, trained and scored on LFW View 2 folds 1-3
# (unrestricted, no outside data), then analysed side by side. Resumable: every run reuses a
# complete record of its configuration and continues training from its checkpoints.
#   FACEBENCH_LFW=../shared/data/lfw bash scripts/deepid2plus_findings.sh
set -euo pipefail
ROOT=${ROOT:-results/analyses/deepid2plus_findings}
STEPS=${STEPS:-500}
PY=${PY:-python}
common=(protocol=lfw_view2 data=lfw "protocol.folds=[1,2,3]" "results_root=$ROOT" reuse_complete=true seed=0)
trained=(backbone.batchnorm=true trainer.optimizer=sgd trainer.lr=0.1 trainer.momentum=0.9 trainer.weight_decay=0.0005
         trainer.schedule=cosine trainer.pk_images=4 trainer.shift_augment=3 trainer.flip_augment=true trainer.resume=true)
budget=("trainer.steps=$STEPS" trainer.batch_size=64 trainer.pk_identities=16)
run() { local name=$1; shift; "$PY" -m facebench "$@" "label=$name" "hydra.run.dir=$ROOT/runs/$name" "${common[@]}"; }
run deepid2_bn +method=deepid2 "${trained[@]}" "${budget[@]}"
# DeepID2 again at the loss study's budget (600 steps of 32 x 4 images): how the findings move with training
run deepid2_bn_600x128 +method=deepid2 "${trained[@]}" trainer.steps=600 trainer.batch_size=128 trainer.pk_identities=32
run deepid2plus_bn +method=deepid2plus "${trained[@]}" "${budget[@]}"
run pixels +method=pixels verifier=joint_bayesian verifier.pca_dim=180
run lbp +method=lbp
"$PY" -m facebench.analyze "$ROOT/runs/deepid2_bn" "$ROOT/runs/deepid2_bn_600x128" "$ROOT/runs/deepid2plus_bn" \
  "$ROOT/runs/pixels" "$ROOT/runs/lbp" "out=$ROOT/side-by-side"
"$PY" -m facebench.analyze "$ROOT/runs/deepid2_bn_600x128" "$ROOT/runs/deepid2plus_bn" "analysis=[sparsification]" analysis.sparsification.max_units=3 \
  "out=$ROOT/sparsification"
