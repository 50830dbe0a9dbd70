"""`moodmic` command line: errors become one line on stderr and the project's exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import EXIT_OK, MoodmicError, UsageError

SAMPLE = Path(__file__).resolve().parent / "samples" / "speech.flac"  # synthetic speech (espeak-ng)


def _common(default: object = None) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=default,
                        help="configuration file (default: $MOODMIC_CONFIG, else /etc/moodmic/config.yaml, else built-in)")
    return common


def build_parser() -> argparse.ArgumentParser:
    # --config works before or after the command; SUPPRESS keeps a subcommand from resetting it.
    common, sub_common = _common(), _common(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="moodmic",
        description="Speech emotion recognition on the edge: microphone -> log-mel -> TFLite -> MQTT.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"moodmic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = sub.add_parser("predict", parents=[sub_common], help="classify audio files; one JSON line per file",
                             description="Classify whole audio files (WAV, FLAC, ...): the mean of the model's "
                                         "windows at the bundle's evaluation hop. One JSON line per file on stdout.")
    predict.add_argument("files", nargs="*", metavar="FILE", help="audio files")
    predict.add_argument("--sample", action="store_true", help=f"also classify the bundled sample ({SAMPLE.name})")
    predict.add_argument("--model", metavar="DIR", help="model bundle directory (default: model.path, else the shipped model)")
    predict.add_argument("--windows", action="store_true", help="add every window's result (per_window)")
    predict.set_defaults(func=cmd_predict)
    return parser


def cmd_predict(args: argparse.Namespace) -> int:
    from .config import load_settings
    from .model import EmotionModel
    from .predict import predict_file

    files = args.files + ([str(SAMPLE)] if args.sample else [])
    if not files:
        raise UsageError("give audio files to classify, or --sample for the bundled one")
    settings = load_settings(args.config)
    model = EmotionModel.load(args.model or settings.model.path or None, threads=settings.model.threads)
    status = EXIT_OK
    for path in files:
        try:
            result = predict_file(model, path, settings.audio.max_file_seconds)
        except MoodmicError as exc:  # report it and go on: one bad file must not cost the others
            _error(exc)
            status = status or exc.exit_code
            continue
        print(json.dumps(result.to_dict(with_windows=args.windows)), flush=True)
    return status


def _error(exc: MoodmicError) -> None:
    print(f"moodmic: error: {exc}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MoodmicError as exc:
        _error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
