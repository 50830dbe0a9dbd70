#!/bin/sh
# The shipped default model (issues 8 and 10), one command:   sh trainer/recipe/default_model.sh [OUT]
#
# Needs the noise recordings of corpora/ in $NOISE (default ../corpora; corpora/README.md prepares them
# in about a minute): their train pool is heard in training, their validation pool chooses, their
# evaluation pool only reports.
# 1. 5-fold cross-validation by actor over RAVDESS actors 01-20 (folds: trainer/recipe/folds.json, seed 0;
#    validation actors from each fold's training side stop training and pick the epoch), five
#    times, with init seeds 0-4 (same folds, same augmented copies, other weights and crops). Spoken
#    training windows are warped in frequency by 1 +- 0.1 (--freq-warp, VTLP-style), sung ones not
#    (--no-freq-warp-song; MODEL_CARD.md says why). Each training clip also gets two multi-condition
#    copies (--rooms 2: a training-pool room, noise or voices at 0-30 dB, a cheap microphone, a far level).
# 2. Per fold, the five fold models averaged (moodmic-train members), every fold scored as whole
#    files through edge.predict.predict_audio, with a window every 0.2 s (--eval-hop: the bundle's
#    evaluation hop, so `moodmic predict` scores files the same way): the validation actors' figures,
#    on which variants are chosen.
# 3. One temperature fitted on the validation actors' windows of every fold, clean and in validation-pool
#    rooms and noise (calibrate --noise; calibration.json).
# 4. The abstention threshold: each fold ensemble converted as shipped (with that temperature), its
#    validation actors played through the daemon in runs of one emotion, clean and in the room condition,
#    at each swept threshold; moodmic-train abstain keeps the smallest with at most 1/3 of the published
#    room time wrong (abstain.json).
# 5. The recipe's CV figure: each fold model retrained as the final model is trained, on every actor
#    outside the fold's test side (its validation actors too) for the best epoch and learning rates
#    its validation chose (moodmic-train refit), the five averaged per fold and scored the same way.
# 6. The final model: each member trained on every actor for its folds' median best epoch, at their
#    median learning rate per epoch; the five averaged in one graph, carrying step 5's figure,
#    converted dynamic-range with the parity gate on the training side, logits + temperature +
#    abstention threshold in the bundle.
# 7. The refitted folds converted the same way and scored on their test actors by the LiteRT
#    interpreter (trainer/recipe/converted_cv.py), in rooms and noise float and converted (moodmic-train
#    conditions, evaluation pool), and played through the daemon at the threshold and holding instead.
# Every step is resumable: run it again after an interruption (finished folds and members are kept).
# --dry-run prints the commands without running them; $DATA names the corpus (default: moodmic-train's).
# Its results, as committed: trainer/recipe/results/ (README.md there says what each file is).
# Two cores: run step 1's seeds as separate commands, one per core (OMP_NUM_THREADS=1), then this; the
# same for step 5 (`moodmic-train refit OUT/cv-S --out OUT/refit-S [--fold K]`) and step 6
# (`moodmic-train final OUT/members --out OUT/final --member I`).
set -eu
case "${1:-}" in
  -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -n|--dry-run) DRY=1; shift ;;
  -*) echo "usage: sh $0 [--dry-run] [OUT]" >&2; exit 2 ;;
esac
HERE=$(dirname "$0")
OUT=${1:-runs/default-model}
# The corpus: $DATA if set, else moodmic-train's default ($MOODMIC_DATA, else ../shared/data/ravdess).
NOISE=${NOISE:-../corpora}
RECIPE="${DATA:+--data $DATA }--seed 0 --folds 5 --val-actors 2 --arch cnn --lr 1e-3 --gain-db 6 --time-masks 2 --freq-masks 2 --band-mean --freq-warp 0.1 --no-freq-warp-song --logits --rooms 2 --room-noise $NOISE"
SWEEP="0.25 0.3 0.32 0.34 0.35 0.36 0.38 0.4 0.42 0.44 0.45 0.46 0.48 0.5 0.55 0.6"  # abstention thresholds tried (step 4)
# run CMD...: the command, or with --dry-run only its line (nothing is read, trained or written)
run() { if [ "${DRY:-0}" = 1 ]; then echo "$*"; else "$@"; fi; }
done_or() { [ "${DRY:-0}" != 1 ] && [ -f "$1" ]; }
for s in 0 1 2 3 4; do
    run nice -n 5 moodmic-train cv $RECIPE --init-seed $s --out "$OUT/cv-$s"
done
done_or "$OUT/members/cv_summary.json" || run moodmic-train members "$OUT/cv-0" "$OUT/cv-1" "$OUT/cv-2" "$OUT/cv-3" \
    "$OUT/cv-4" --out "$OUT/members" --eval-hop 0.2
done_or "$OUT/members/calibration.json" || run moodmic-train calibrate "$OUT/members" --noise "$NOISE"
run python "$HERE/converted_cv.py" "$OUT/members" "$OUT/members-converted" --calibration "$OUT/members/calibration.json"
for p in $SWEEP; do
    done_or "$OUT/sweep/val-$p/replay.json" || run moodmic-train replay "$OUT/members" --bundles "$OUT/members-converted" \
        --noise "$NOISE" --conditions clean,room --part validation --abstain-below "$p" --out "$OUT/sweep/val-$p"
done
run moodmic-train abstain "$OUT/sweep"
for s in 0 1 2 3 4; do
    run nice -n 5 moodmic-train refit "$OUT/cv-$s" --out "$OUT/refit-$s"
done
done_or "$OUT/refit-members/cv_summary.json" || run moodmic-train members "$OUT/refit-0" "$OUT/refit-1" "$OUT/refit-2" \
    "$OUT/refit-3" "$OUT/refit-4" --out "$OUT/refit-members" --eval-hop 0.2
run nice -n 5 moodmic-train final "$OUT/members" --out "$OUT/final" --refit "$OUT/refit-members"
run moodmic-convert "$OUT/final" --out "$OUT/bundle" --mode dynamic --parity-side train \
    --calibration "$OUT/members/calibration.json" --abstain "$OUT/sweep/abstain.json" --name moodmic-cnnx5rooms-dynamic
run python "$HERE/converted_cv.py" "$OUT/refit-members" "$OUT/converted" --calibration "$OUT/members/calibration.json"
run moodmic-train conditions "$OUT/refit-members" --noise "$NOISE" --out "$OUT/conditions" --jobs 2
run moodmic-train conditions "$OUT/refit-members" --bundles "$OUT/converted" --noise "$NOISE" --out "$OUT/conditions-converted" --jobs 2
P=$(python -c "import json; print(json.load(open('$OUT/sweep/abstain.json'))['abstain_below'])" 2>/dev/null || echo P)
done_or "$OUT/replay/replay.json" || run moodmic-train replay "$OUT/refit-members" --bundles "$OUT/converted" \
    --noise "$NOISE" --abstain-below "$P" --out "$OUT/replay"
done_or "$OUT/replay-hold/replay.json" || run moodmic-train replay "$OUT/refit-members" --bundles "$OUT/converted" \
    --noise "$NOISE" --hold --out "$OUT/replay-hold"
