#!/bin/sh
# The variants cross-validated against the default recipe (MODEL_CARD.md, "Variants tried"), same
# folds (recipes/folds.json, seed 0), each resumable:   sh recipes/variants.sh VARIANT [OUT]
#
#   seed           the upstream architecture as issue 4 trained it (BiLSTM + attention, Adam 3e-4,
#                  30 epochs at most, softmax output, no band mean, no gain or masks): the baseline
#   no-band-mean   the default recipe without per-window band-mean subtraction
#   members        the default recipe as an ensemble of 3 per fold (init seeds 0, 1, 2); member 0 is
#                  the default recipe's own cv (sh recipes/default_model.sh OUT first)
set -eu
VARIANT=${1:?which variant: seed, no-band-mean or members}
OUT=${2:-runs/default-model}
DATA=${DATA:-../shared/data/ravdess}
RECIPE="--data $DATA --seed 0 --folds 5 --val-actors 2 --arch cnn --lr 1e-3 --gain-db 6 --time-masks 2 --freq-masks 2 --logits"
case "$VARIANT" in
  seed)
    nice -n 5 moodmic-train cv --data "$DATA" --seed 0 --folds 5 --val-actors 2 --out "$OUT/variants/seed" \
        --arch seed --epochs 30 --no-band-mean --no-logits ;;
  no-band-mean)
    nice -n 5 moodmic-train cv $RECIPE --no-band-mean --out "$OUT/variants/no-band-mean" ;;
  members)
    [ -f "$OUT/cv/cv_summary.json" ] || { echo "run sh recipes/default_model.sh $OUT first (member 0)" >&2; exit 2; }
    for s in 1 2; do nice -n 5 moodmic-train cv $RECIPE --band-mean --init-seed $s --out "$OUT/variants/member-$s"; done
    moodmic-train members "$OUT/cv" "$OUT/variants/member-1" "$OUT/variants/member-2" --out "$OUT/variants/members" ;;
  *)
    echo "unknown variant $VARIANT: seed, no-band-mean or members" >&2; exit 2 ;;
esac
