#!/bin/sh
# The variants cross-validated against the default recipe (MODEL_CARD.md, "Variants tried"), same
# folds (recipes/folds.json, seed 0), each resumable:   sh recipes/variants.sh VARIANT [OUT]
#
#   seed             the upstream architecture as issue 4 trained it (BiLSTM + attention, Adam 3e-4,
#                    30 epochs at most, softmax output, no band mean, no gain or masks): the baseline
#   one-model        the default recipe with one model per fold instead of five: its init seed 0
#                    cross-validation (sh recipes/default_model.sh OUT trains it in step 1)
#   three-models     the default recipe with three models per fold (init seeds 0-2) instead of five
#   no-band-mean     one model per fold, without per-window band-mean subtraction
#   label-smoothing  one model per fold, label smoothing 0.1
#   mixup            one model per fold, mixup of training windows (alpha 0.4)
#   band-std         one model per fold, each band also divided by its standard deviation over the window
#   speaker-mean     one model per fold, each actor's long-term spectrum subtracted from every frame
#                    instead of each window's band mean (trainer.speaker)
#   freq-warp        one model per fold, training windows warped in frequency by 1 +- 0.1 (VTLP-style)
#   stats-pooling    one model per fold, `cnn_stats`: mean and standard deviation pooling over time
#   freq-warp-five   the default recipe (five models per fold) with the frequency warp: freq-warp's
#                    run is its init seed 0
set -eu
VARIANT=${1:?which variant: seed, one-model, three-models, no-band-mean, label-smoothing, mixup, band-std, speaker-mean, freq-warp, stats-pooling or freq-warp-five}
OUT=${2:-runs/default-model}
DATA=${DATA:-../shared/data/ravdess}
RECIPE="--data $DATA --seed 0 --folds 5 --val-actors 2 --arch cnn --lr 1e-3 --gain-db 6 --time-masks 2 --freq-masks 2 --logits"
case "$VARIANT" in
  seed)
    nice -n 5 moodmic-train cv --data "$DATA" --seed 0 --folds 5 --val-actors 2 --out "$OUT/variants/seed" \
        --arch seed --epochs 30 --no-band-mean --no-logits ;;
  one-model)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --init-seed 0 --out "$OUT/cv-0" ;;
  three-models)
    for s in 0 1 2; do nice -n 5 moodmic-train cv $RECIPE --band-mean --init-seed $s --out "$OUT/cv-$s"; done
    moodmic-train members "$OUT/cv-0" "$OUT/cv-1" "$OUT/cv-2" --out "$OUT/variants/three-models" ;;
  no-band-mean)
    nice -n 5 moodmic-train cv $RECIPE --no-band-mean --out "$OUT/variants/no-band-mean" ;;
  label-smoothing)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --label-smoothing 0.1 --out "$OUT/variants/label-smoothing" ;;
  mixup)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --mixup 0.4 --out "$OUT/variants/mixup" ;;
  band-std)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --band-std --init-seed 0 --out "$OUT/variants/band-std" ;;
  speaker-mean)
    nice -n 5 moodmic-train cv $RECIPE --no-band-mean --speaker-mean --init-seed 0 --out "$OUT/variants/speaker-mean" ;;
  freq-warp)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --freq-warp 0.1 --init-seed 0 --out "$OUT/variants/freq-warp" ;;
  stats-pooling)
    # (a repeated option: the last one counts)
    nice -n 5 moodmic-train cv $RECIPE --arch cnn_stats --band-mean --init-seed 0 --out "$OUT/variants/stats-pooling" ;;
  freq-warp-five)
    sh "$0" freq-warp "$OUT"
    for s in 1 2 3 4; do
        nice -n 5 moodmic-train cv $RECIPE --band-mean --freq-warp 0.1 --init-seed $s --out "$OUT/variants/freq-warp-$s"
    done
    [ -f "$OUT/variants/freq-warp-five/cv_summary.json" ] || moodmic-train members "$OUT/variants/freq-warp" \
        "$OUT/variants/freq-warp-1" "$OUT/variants/freq-warp-2" "$OUT/variants/freq-warp-3" "$OUT/variants/freq-warp-4" \
        --out "$OUT/variants/freq-warp-five" ;;
  *)
    echo "unknown variant $VARIANT: seed, one-model, three-models, no-band-mean, label-smoothing, mixup, band-std, speaker-mean, freq-warp, stats-pooling or freq-warp-five" >&2; exit 2 ;;
esac
