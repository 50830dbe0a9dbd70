"""moodmic-train: train a model on RAVDESS (or a manifest corpus), cross-validate it, or re-score one.

    moodmic-train train [--data DIR] [--out RUN] [--split actor|stratified] [--fold K] [--arch seed] ...
    moodmic-train train --resume --out RUN        continue a killed run from its last epoch
    moodmic-train cv --out DIR [--fold K] ...     every fold (or fold K) as DIR/fold-K, plus a summary
    moodmic-train evaluate RUN_OR_BUNDLE [--data DIR] [--out DIR]
    moodmic-train calibrate CV_DIR [--noise DIR]  temperature from the CV's validation actors (logits models),
                                                 in rooms and noise too with --noise
    moodmic-train conditions RUN_OR_CV_DIR --noise DIR [--out OUT]   validation and test actors in rooms and noise
    moodmic-train abstain CONDITIONS_DIR          the threshold under which a device says "uncertain"
    moodmic-train replay CV_DIR --bundles DIR --noise DIR   what the daemon publishes in rooms: coverage, wrong
    moodmic-train ensemble CV_DIR --out RUN      the CV's fold models averaged in one model (a run to convert)
    moodmic-train members CV_DIR CV_DIR ... --out DIR   a CV of ensembles: cv runs differing in --init-seed, per fold
    moodmic-train refit CV_DIR --out DIR [--fold K]   each fold retrained on all its non-test actors, as final trains
    moodmic-train final CV_DIR --out RUN [--refit DIR]   the CV's recipe trained on every actor (epochs and
                                                 rates from the CV), carrying DIR's figure if given

Settings options default to the dataclass defaults (trainer.settings.RunSettings and the settings it
holds); a resumed run keeps its saved settings, and an option given with --resume must agree.
Errors print `moodmic-train: error: <message>` and exit with the code of edge.errors.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from edge.data_path import DATA_ENV, DATA_HELP, data_dir
from edge.errors import MoodmicError, UsageError, require_extra

from .settings import MONITORS, RunSettings, get_setting, settings_for_resume, with_setting
from .splits import KINDS

PROG = "moodmic-train"
DEFAULTS = RunSettings()


def _actors(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


def _span(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 100:
        raise argparse.ArgumentTypeError(f"{n} is not a span of 1-100 windows")
    return n


# (flag, settings path, argparse options, help); every default comes from RunSettings().
_SETTINGS_FLAGS: list[tuple[str, str, dict, str]] = [
    ("--data", "data", {"metavar": "DIR_OR_CSV"},
     f"RAVDESS-named folder or CSV manifest (path,label,speaker); default {DATA_HELP}"),
    ("--out", "out", {"metavar": "DIR"}, "run directory (cv: the folder of fold-K runs); default runs/<command>-<time>"),
    ("--cache", "cache", {"metavar": "DIR"}, "feature cache folder; default ~/.cache/moodmic/features"),
    ("--seed", "seed", {"type": int, "metavar": "N"}, "seed of splits, augmentation, crops and weights"),
    ("--arch", "arch", {"metavar": "NAME"},
     "model architecture (trainer.model.ARCHS): cnn (the shipped model's), seed (the upstream's), tiny, tiny_lstm (tests)"),
    ("--eval-hop", "eval_hop_s", {"type": float, "metavar": "SECONDS"}, "hop between windows when scoring whole files"),
    ("--split", "split.kind", {"choices": KINDS},
     "actor: speaker-independent; stratified: the seed's clip-level split; all: every clip trains (final model)"),
    ("--folds", "split.folds", {"type": int, "metavar": "K"}, "k: the test side is one fold of k"),
    ("--fold", "split.fold", {"type": int, "metavar": "K"}, "the fold used as test side (cv: run only this fold)"),
    ("--val-actors", "split.val_actors", {"type": int, "metavar": "N"}, "validation speakers, from the training side"),
    ("--test-actors", "split.test_actors", {"type": _actors, "metavar": "A,B,..."}, "test speakers instead of fold K"),
    ("--aug-copies", "augment.copies", {"type": int, "metavar": "N"}, "augmented copies per training clip (0: none)"),
    ("--aug-noise", "augment.noise", {"action": argparse.BooleanOptionalAction}, "add white noise"),
    ("--aug-snr-db", "augment.snr_db", {"type": float, "nargs": 2, "metavar": ("LOW", "HIGH")}, "noise SNR range (dB)"),
    ("--aug-pitch", "augment.pitch_semitones", {"type": float, "metavar": "SEMITONES"}, "pitch shift range +- (0: off)"),
    ("--aug-stretch", "augment.stretch", {"type": float, "metavar": "FRACTION"}, "time-stretch rate range 1 +- (0: off)"),
    ("--webrtc-ns", "webrtc_noise_suppression", {"type": int, "metavar": "LEVEL"},
     "WebRTC noise suppression in front of the features, 1-4 (0: off); the bundle carries it to the device"),
    ("--webrtc-agc", "webrtc_auto_gain_dbfs", {"type": int, "metavar": "DBFS"},
     "WebRTC automatic gain in front of the features, 1-31 (0: off); the bundle carries it to the device"),
    ("--rooms", "augment.rooms", {"type": int, "metavar": "N"},
     "multi-condition copies per training clip: training-pool rooms, noise and microphones (trainer.room_copies)"),
    ("--room-noise", "augment.room_noise", {"nargs": "+", "metavar": "DIR"},
     "noise folders for --rooms (corpora/ layout; only their train pool is used)"),
    ("--room-snr-db", "augment.room_snr_db", {"type": float, "nargs": 2, "metavar": ("LOW", "HIGH")},
     "SNR range of the room copies' noise (dB)"),
    ("--epochs", "fit.epochs", {"type": int, "metavar": "N"}, "most epochs; early stopping usually ends sooner"),
    ("--batch-size", "fit.batch_size", {"type": int, "metavar": "N"}, "windows per batch"),
    ("--lr", "fit.learning_rate", {"type": float, "metavar": "RATE"}, "Adam learning rate"),
    ("--patience", "fit.patience", {"type": int, "metavar": "EPOCHS"}, "early stopping patience (epochs)"),
    ("--lr-patience", "fit.lr_patience", {"type": int, "metavar": "EPOCHS"},
     "halve the learning rate after this many epochs without a better validation value"),
    ("--monitor", "fit.monitor", {"choices": tuple(MONITORS)}, "validation quantity that stops, slows and picks the model"),
    ("--crops", "fit.crops", {"type": int, "metavar": "N"}, "random window crops per training row per epoch"),
    ("--oversample", "fit.oversample", {"action": argparse.BooleanOptionalAction}, "oversample minority classes (training only)"),
    ("--init-seed", "fit.init_seed", {"type": int, "metavar": "N"},
     "seed of weights, crops and batch augmentation only (ensemble members; default: --seed)"),
    ("--teacher", "fit.teacher", {"metavar": "FILE"},
     "distil: soft labels of the training clips from a teacher file (trainer.teacher)"),
    ("--teacher-weight", "fit.teacher_weight", {"type": float, "metavar": "W"},
     "weight of the teacher's probabilities in each training target, 0-1 (with --teacher)"),
    ("--teacher-song", "fit.teacher_song", {"action": argparse.BooleanOptionalAction},
     "teach song clips too (--no-teacher-song: spoken clips only, sung ones keep their plain labels)"),
    ("--freq-warp", "augment.freq_warp", {"type": float, "metavar": "F"},
     "frequency warp of training windows, scale drawn from 1 +- F (0: off)"),
    ("--freq-warp-song", "augment.freq_warp_song", {"action": argparse.BooleanOptionalAction},
     "warp song clips' windows too (--no-freq-warp-song: speech only)"),
    ("--gain-db", "augment.gain_db", {"type": float, "metavar": "DB"}, "random gain of training windows, +- dB (0: off)"),
    ("--time-masks", "augment.time_masks", {"type": int, "metavar": "N"}, "SpecAugment time masks per training window"),
    ("--time-mask", "augment.time_mask", {"type": int, "metavar": "FRAMES"}, "longest time mask"),
    ("--freq-masks", "augment.freq_masks", {"type": int, "metavar": "N"}, "SpecAugment frequency masks per training window"),
    ("--freq-mask", "augment.freq_mask", {"type": int, "metavar": "BANDS"}, "widest frequency mask"),
    ("--band-mean", "model.band_mean", {"action": argparse.BooleanOptionalAction},
     "subtract each mel band's mean over the window inside the model"),
    ("--logits", "model.logits", {"action": argparse.BooleanOptionalAction},
     "output logits (softmax in the loss; the bundle carries a temperature)"),
    ("--ensemble", "model.ensemble", {"type": int, "metavar": "N"}, "copies of the architecture averaged in one graph"),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Train, cross-validate or re-score moodmic models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("train", "train one run and evaluate it"), ("cv", "cross-validation over folds, kept per fold")):
        p = sub.add_parser(name, help=text, description=text)
        for flag, path, options, help_text in _SETTINGS_FLAGS:
            default = get_setting(DEFAULTS, path)
            shown = f" (default {default})" if default not in ("", (), None) else ""
            p.add_argument(flag, dest=path, default=argparse.SUPPRESS, help=help_text + shown, **options)
        if name == "train":
            p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved epoch")
    p = sub.add_parser("evaluate", help="score a run or a model bundle on a corpus")
    p.add_argument("target", metavar="RUN_OR_BUNDLE", help="finished run directory or model bundle directory")
    p.add_argument("--data", metavar="DIR_OR_CSV", help=f"RAVDESS-named folder or CSV manifest; default {DATA_HELP}")
    p.add_argument("--out", metavar="DIR", help="where to write the results (default: RUN/evaluations/<data>)")
    p = sub.add_parser("calibrate", help="fit a temperature on the validation actors of a cross-validation")
    p.add_argument("cv_dir", metavar="CV_DIR", help="a moodmic-train cv --out folder whose models output logits")
    p.add_argument("--noise", metavar="NOISE_DIR", action="append", default=[],
                   help="noise recordings (as conditions): fit on the validation actors in rooms and noise too; repeatable")
    p.add_argument("--conditions", metavar="NAMES",
                   help="with --noise: conditions to render (default: trainer.calibrate.CONDITIONS)")
    p.add_argument("--seed", type=int, default=0, help="seed of the renderings (as conditions)")
    p = sub.add_parser("members", help="a cross-validation of ensembles: per fold, the members of several cv runs averaged")
    p.add_argument("cv_dirs", metavar="CV_DIR", nargs="+", help="moodmic-train cv folders that differ only in --init-seed")
    p.add_argument("--out", metavar="DIR", required=True, help="where the per-fold ensembles and their cv_summary go")
    p.add_argument("--eval-hop", metavar="SECONDS", type=float,
                   help="hop between windows when scoring whole files (default: the members' own)")
    p = sub.add_parser("refit", help="each fold of a cross-validation retrained on every actor outside its test side")
    p.add_argument("cv_dir", metavar="CV_DIR", help="a moodmic-train cv folder (one model per fold)")
    p.add_argument("--out", metavar="DIR", required=True, help="where the refitted folds and their cv_summary go (resumable)")
    p.add_argument("--fold", metavar="K", type=int, help="refit fold K only (one process per core)")
    p = sub.add_parser("final", help="a finished cross-validation's recipe trained on every actor (a run to convert)")
    p.add_argument("cv_dir", metavar="CV_DIR", help="a moodmic-train cv or members folder, every fold finished")
    p.add_argument("--out", metavar="RUN", required=True, help="run directory to write (resumable)")
    p.add_argument("--member", metavar="I", type=int, help="train member I only (one process per core), combine later")
    p.add_argument("--refit", metavar="DIR", help="a refit of CV_DIR (refit, then members): the figure the run carries")
    p = sub.add_parser("conditions", help="a run's or CV's validation and test actors scored in rooms, noise and far field")
    p.add_argument("target", metavar="RUN_OR_CV_DIR", help="a finished run, or a cv, refit or members folder of fold-K runs")
    p.add_argument("--noise", metavar="NOISE_DIR", action="append", default=[],
                   help="noise recordings with a manifest (path,kind,pool,source; corpora/ prepares them); repeatable")
    p.add_argument("--out", metavar="DIR", help="where results and caches go (resumable; default RUN_OR_CV_DIR/conditions)")
    p.add_argument("--data", metavar="DIR_OR_CSV", help="where the runs' clips are now, matched by sha256 (default: "
                   "the paths in each run's manifest.csv)")
    p.add_argument("--conditions", metavar="NAMES", help="comma-separated names or patterns, e.g. clean,noise-voices-* "
                   "(default: all of trainer.rooms.CONDITIONS)")
    p.add_argument("--clips-per-actor", metavar="N", type=int, help="score N clips per actor only (a quick run)")
    p.add_argument("--seed", metavar="N", type=int, default=0, help="seed of every rendering (default 0)")
    p.add_argument("--synthetic-noise", action="store_true",
                   help="seeded stand-in noise instead of recordings, labelled synthetic (tests and dry runs)")
    p.add_argument("--bundles", metavar="DIR", help="score converted bundles DIR/fold-K[/bundle] instead of the Keras models")
    p.add_argument("--jobs", metavar="N", type=int, default=1, help="worker processes, at most one per core (default 1)")
    p = sub.add_parser("replay", help="test actors in rooms through the daemon: coverage and wrong share of published time")
    p.add_argument("target", metavar="CV_DIR", help="a cv, refit or members folder of fold-K runs (or one run)")
    p.add_argument("--bundles", metavar="DIR", required=True, help="the folds converted: DIR/fold-K[/bundle]")
    p.add_argument("--noise", metavar="NOISE_DIR", action="append", default=[], help="noise recordings (as conditions)")
    p.add_argument("--conditions", metavar="NAMES", help="comma-separated names or patterns (default: a room's main ones)")
    p.add_argument("--out", metavar="DIR", help="where replay.json and replay.md go (default CV_DIR/replay)")
    p.add_argument("--hold", action="store_true", help="smoothing.uncertain false: hold the last emotion, never abstain")
    p.add_argument("--part", choices=("test", "validation"), default="test",
                   help="whose clips: the test actors (evaluation pool, a report) or the validation actors (their pool)")
    p.add_argument("--abstain-below", type=float, metavar="P",
                   help="this abstention threshold instead of the bundles' (a sweep on the validation actors)")
    p.add_argument("--span", type=_span, metavar="N",
                   help="this EMA span (smoothing.windows) instead of the bundles' (a sweep with --abstain-below)")
    p = sub.add_parser("abstain", help="the abstention threshold, chosen on the validation actors in rooms and noise")
    p.add_argument("conditions_dir", metavar="CONDITIONS_DIR", help="an output folder of moodmic-train conditions, or "
                   "of validation replays, one subfolder per --abstain-below P (the daemon's rule)")
    p.add_argument("--condition", default="room", help="the condition whose wrong share is bounded (default room)")
    p.add_argument("--max-wrong", type=float, default=1 / 3,
                   help="most wrong share of the covered validation speech clips in that condition (default 1/3)")
    p = sub.add_parser("ensemble", help="the fold models of a cross-validation averaged in one model (a run directory)")
    p.add_argument("cv_dir", metavar="CV_DIR", help="a moodmic-train cv --out folder")
    p.add_argument("--out", metavar="RUN", required=True, help="run directory to write (moodmic-convert reads it)")
    return parser


def _default_data() -> str:
    data = data_dir()
    if data.is_dir():
        return str(data)
    raise UsageError(f"--data is required: there is no {data} (set ${DATA_ENV} or pass --data DIR_OR_CSV)")


def _settings(args: argparse.Namespace) -> tuple[RunSettings, set[str]]:
    given = {k: v for k, v in vars(args).items() if "." in k or k in RunSettings.__dataclass_fields__}
    settings = DEFAULTS
    for path, value in given.items():
        if isinstance(get_setting(DEFAULTS, path), tuple):
            value = tuple(value)
        if path in ("data", "out", "cache"):
            value = str(Path(value).expanduser().resolve())
        settings = with_setting(settings, path, value)
    return settings, set(given)


def run(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "evaluate":
        from .rescore import evaluate_target

        evaluate_target(args.target, args.data or _default_data(), args.out)
        return
    if args.command == "calibrate":
        from .calibrate import calibrate_cv

        calibrate_cv(args.cv_dir, args.noise, args.conditions, args.seed)
        return
    if args.command == "members":
        from .members import members_cv

        members_cv(args.cv_dirs, args.out, argv=argv, eval_hop_s=args.eval_hop)
        return
    if args.command == "refit":
        from .refit import refit_cv

        refit_cv(args.cv_dir, args.out, fold=args.fold, argv=argv)
        return
    if args.command == "final":
        from .final import final_run

        final_run(args.cv_dir, args.out, argv=argv, member=args.member, refit=args.refit)
        return
    if args.command == "conditions":
        from .conditions import measure_conditions

        measure_conditions(args.target, args.noise, args.out, data=args.data, conditions=args.conditions,
                           clips_per_actor=args.clips_per_actor, seed=args.seed, synthetic_noise=args.synthetic_noise,
                           bundles=args.bundles, jobs=args.jobs, argv=argv)
        return
    if args.command == "replay":
        from .replay import measure_replays

        measure_replays(args.target, args.bundles, args.noise, args.out, args.conditions, hold=args.hold, part=args.part,
                        abstain_below=args.abstain_below, span=args.span)
        return
    if args.command == "abstain":
        from .abstain import choose_any

        choose_any(args.conditions_dir, args.condition, args.max_wrong)
        return
    if args.command == "ensemble":
        from .ensemble import ensemble_run

        ensemble_run(args.cv_dir, args.out, argv=argv)
        return
    settings, explicit = _settings(args)
    if settings.augment.rooms > 0 and not settings.augment.room_noise:  # else every copy fails an hour in
        raise UsageError("--rooms N needs --room-noise DIR (noise folders prepared by `python -m corpora.prepare`, "
                         "see corpora/README.md)")
    resume = getattr(args, "resume", False)
    if resume and "out" not in explicit:
        raise UsageError("--resume needs --out RUN, the run to continue")
    if resume:
        settings = settings_for_resume(Path(settings.out), settings, explicit)
    elif "data" not in explicit:
        settings = with_setting(settings, "data", _default_data())
    if "out" not in explicit:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        settings = with_setting(settings, "out", str(Path("runs", f"{args.command}-{stamp}").resolve()))
    if args.command == "train":
        from .run import train_run

        train_run(settings, resume=resume, argv=argv)
    else:
        from .crossval import cv_run

        cv_run(settings, explicit, argv=argv)


def main(argv: list[str] | None = None) -> int:
    try:
        require_extra("train")  # a device install (.[edge]) has no TensorFlow: one line, exit 69, not a traceback
        run(argv)
    except MoodmicError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue the run with: {PROG} train --resume --out RUN", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
