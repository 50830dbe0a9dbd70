#!/bin/sh
# The shipped default model (issue 8), one command:   sh recipes/default_model.sh [OUT]
#
# 1. 5-fold cross-validation by actor over RAVDESS actors 01-20 (folds: recipes/folds.json, seed 0;
#    validation actors from each fold's training side stop training and pick the epoch);
#    every fold scored as whole files through edge.predict.predict_audio (sliding windows).
# 2. One temperature fitted on the validation actors' windows of every fold (calibration.json).
# 3. The five fold models averaged in one graph (an ensemble that has seen every actor: its
#    figure is the CV of step 1, one model per fold), converted dynamic-range with the parity gate
#    on the training side, logits + temperature in the bundle.
# Every step is resumable: run it again after an interruption (finished folds are kept).
set -eu
OUT=${1:-runs/default-model}
DATA=${DATA:-../shared/data/ravdess}
nice -n 5 moodmic-train cv --data "$DATA" --out "$OUT/cv" --seed 0 --folds 5 --val-actors 2 \
    --arch cnn --lr 1e-3 --gain-db 6 --time-masks 2 --freq-masks 2 --band-mean --logits
[ -f "$OUT/cv/calibration.json" ] || moodmic-train calibrate "$OUT/cv"
[ -f "$OUT/ensemble/run.json" ] || { rm -rf "$OUT/ensemble"; moodmic-train ensemble "$OUT/cv" --out "$OUT/ensemble"; }
moodmic-convert "$OUT/ensemble" --out "$OUT/bundle" --mode dynamic --parity-side train \
    --calibration "$OUT/cv/calibration.json" --name moodmic-cnn5-dynamic
