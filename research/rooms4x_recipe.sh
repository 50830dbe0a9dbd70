#!/bin/bash
# The next default-model candidate (issue [10]): trainer/recipe/default_model.sh with four room copies per
# clip drawn from two noise collections (variant 31, rooms-4-extra), heard through the WebRTC front end
# (variant 35), and the EMA span chosen with the threshold (variant 32), run as one worker per core.
#
#   bash research/rooms4x_recipe.sh [OUT]        (default runs/rooms4xw; from the repository root)
#
# $NOISE (default ../corpora) is heard in training (train pool), chooses (validation pool) and reports
# (evaluation pool); $NOISE_EXTRA (default ../corpora-extra, corpora/README.md "second round") only
# adds to the training pool, so every figure compares with the shipped recipe's on the same renderings.
# $JOBS workers (default 2, one thread each) take the next task whose inputs are done and that no
# worker holds; a task's marker in OUT/.done is written when it ends. Every step resumes where it
# stopped: run the same command again after an interruption. About 10 core-hours on x86-64 (five
# cross-validations of 1-1.2 h each at one thread, five refits, five final members, the sweep, the
# conditions and the replays). When it ends, `python trainer/recipe/collect.py OUT` brings the bundle
# and results into the repository, as the shipped recipe's.
set -u
O=${1:-runs/rooms4xw}; N=${NOISE:-../corpora}; X=${NOISE_EXTRA:-../corpora-extra}; JOBS=${JOBS:-2}
# $FRONT: the front end's trainer options for every cross-validation (default: WebRTC noise suppression 2 and
# automatic gain 5, variant 35; FRONT="" for none); the later steps read it from the runs.
FRONT=${FRONT---webrtc-ns 2 --webrtc-agc 5}
NAME=${NAME:-moodmic-cnnx5rooms4xwebrtc-dynamic}  # the bundle's name
RECIPE="--seed 0 --folds 5 --val-actors 2 --arch cnn --lr 1e-3 --gain-db 6 --time-masks 2 --freq-masks 2 --band-mean --freq-warp 0.1 --no-freq-warp-song --logits --rooms 4 --room-noise $N $X $FRONT"
SWEEP="0.25 0.3 0.32 0.34 0.35 0.36 0.38 0.4 0.42 0.44 0.45 0.46 0.48 0.5 0.55 0.6"
SPANS="3 5"
export OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
mkdir -p "$O/.done"; rm -rf "$O/.claim" "$O/.failed"; mkdir -p "$O/.claim" "$O/.failed"  # no worker runs yet

cv_done() { python -c "import json,sys; sys.exit(len(json.load(open('$O/cv-$1/cv_summary.json'))['folds_done'])!=5)" 2>/dev/null; }
have() { for d in "$@"; do [ -f "$O/.done/$d" ] || return 1; done; }
# task NAME INPUTS... -- COMMAND...: runs it if its inputs are done and nobody holds it (0: ran, 1: not now)
task() {
  local name=$1; shift; local deps=(); while [ "$1" != -- ]; do deps+=("$1"); shift; done; shift
  [ -f "$O/.done/$name" ] && return 1
  have "${deps[@]}" || return 1
  mkdir "$O/.claim/$name" 2>/dev/null || return 1
  echo "== $(date +%T) $name: $*"
  if nice -n 5 "$@"; then touch "$O/.done/$name"; echo "== $(date +%T) $name done"
  else touch "$O/.failed/$name"; echo "== $(date +%T) $name FAILED"; fi
  return 0
}
chosen() { python -c "import json; print(json.load(open('$O/sweep/abstain.json'))['$1'])"; }

worker() {
  local cvs=(cv-0 cv-1 cv-2 cv-3 cv-4) refits=(refit-0 refit-1 refit-2 refit-3 refit-4) finals=() sweeps=() s w p i
  for i in 0 1 2 3 4; do finals+=("final-$i"); done
  for w in $SPANS; do for p in $SWEEP; do sweeps+=("sweep-$w-$p"); done; done
  while true; do
    for s in 0 1 2 3 4; do [ -f "$O/.done/cv-$s" ] || ! cv_done $s || touch "$O/.done/cv-$s"; done
    for s in 0 1 2 3 4; do
      task "cv-$s" -- moodmic-train cv $RECIPE --init-seed $s --out "$O/cv-$s" && continue 2
    done
    task members "${cvs[@]}" -- moodmic-train members "$O"/cv-{0,1,2,3,4} --out "$O/members" --eval-hop 0.2 && continue
    task calibrate members -- moodmic-train calibrate "$O/members" --noise "$N" && continue
    task members-converted calibrate -- python trainer/recipe/converted_cv.py "$O/members" "$O/members-converted" \
        --calibration "$O/members/calibration.json" && continue
    for w in $SPANS; do for p in $SWEEP; do
      task "sweep-$w-$p" members-converted -- moodmic-train replay "$O/members" --bundles "$O/members-converted" \
          --noise "$N" --conditions clean,room --part validation --abstain-below "$p" --span "$w" \
          --out "$O/sweep/span-$w-$p" && continue 3
    done; done
    task abstain "${sweeps[@]}" -- moodmic-train abstain "$O/sweep" && continue
    for s in 0 1 2 3 4; do task "refit-$s" "cv-$s" -- moodmic-train refit "$O/cv-$s" --out "$O/refit-$s" && continue 2; done
    task refit-members "${refits[@]}" -- moodmic-train members "$O"/refit-{0,1,2,3,4} --out "$O/refit-members" \
        --eval-hop 0.2 && continue
    for i in 0 1 2 3 4; do
      task "final-$i" members refit-members -- moodmic-train final "$O/members" --out "$O/final" \
          --refit "$O/refit-members" --member $i && continue 2
    done
    task converted refit-members calibrate -- python trainer/recipe/converted_cv.py "$O/refit-members" "$O/converted" \
        --calibration "$O/members/calibration.json" && continue
    task conditions refit-members -- moodmic-train conditions "$O/refit-members" --noise "$N" --out "$O/conditions" \
        --jobs 1 && continue
    task final "${finals[@]}" -- moodmic-train final "$O/members" --out "$O/final" --refit "$O/refit-members" && continue
    task bundle final abstain -- moodmic-convert "$O/final" --out "$O/bundle" --mode dynamic --parity-side train \
        --calibration "$O/members/calibration.json" --abstain "$O/sweep/abstain.json" \
        --name "$NAME" && continue
    task conditions-converted converted -- moodmic-train conditions "$O/refit-members" --bundles "$O/converted" \
        --noise "$N" --out "$O/conditions-converted" --jobs 1 && continue
    task replay converted abstain -- moodmic-train replay "$O/refit-members" --bundles "$O/converted" --noise "$N" \
        --abstain-below "$(chosen abstain_below)" --span "$(chosen smoothing_windows)" --out "$O/replay" && continue
    task replay-hold converted abstain -- moodmic-train replay "$O/refit-members" --bundles "$O/converted" \
        --noise "$N" --hold --span "$(chosen smoothing_windows)" --out "$O/replay-hold" && continue
    have bundle conditions conditions-converted replay replay-hold && { echo "== all done: $O"; return 0; }
    [ -z "$(ls -A "$O/.failed")" ] || { echo "== stopped: $(ls "$O/.failed") failed (see the logs); fix, run again"; return 1; }
    sleep "${POLL_S:-60}"  # another worker holds what comes next
  done
}

for j in $(seq "$JOBS"); do worker > "$O/worker-$j.log" 2>&1 & done
echo "workers: $O/worker-*.log"
wait
