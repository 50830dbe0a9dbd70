"""`moodmic` command line: errors become one line on stderr and the project's exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import LOG_LEVELS
from .errors import EXIT_OK, MoodmicError, UsageError

SAMPLE = Path(__file__).resolve().parent / "samples" / "speech.flac"  # one RAVDESS recording (samples/README.md)
SAMPLE_FACTS = SAMPLE.with_suffix(".json")  # what it is: actor, emotion, license; the one place that says so


def sample_note(bundle) -> str:
    """What the bundled sample is, and whether `bundle`'s model heard its actor, for a line next to the result."""
    facts = json.loads(SAMPLE_FACTS.read_text(encoding="utf-8"))
    split = (bundle.info.get("training") or {}).get("split") or {}
    sides = {side: set((split.get(side) or {}).get("actors") or ()) for side in ("train", "val", "test")}
    heard = ("an actor the model heard in training" if facts["actor"] in sides["train"]
             else "an actor the model never heard (a test actor)" if facts["actor"] in sides["test"]
             else "an actor the model saw only for validation" if facts["actor"] in sides["val"]
             else "the model's bundle does not say whether it heard this actor")
    return (f"{SAMPLE.name} is {facts['corpus']} actor {facts['actor']}, {facts['emotion']} "
            f"({facts['intensity']}, \"{facts['statement']}\"); {heard}")


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

    run = sub.add_parser("run", parents=[sub_common], help="the daemon: listen, classify, publish",
                         description="Listen to a microphone (or replay a file), classify speech windows and publish "
                                     "the smoothed emotion over MQTT (or print it). Options override config.yaml.")
    run.add_argument("--model", metavar="DIR", help="model bundle directory (default: model.path, else the shipped model)")
    run.add_argument("--source", metavar="SPEC", help="'mic' or 'file:PATH' (default: audio.source)")
    run.add_argument("--device", metavar="NAME|INDEX", help="input device (default: audio.device); see `moodmic devices`")
    run.add_argument("--sample", action="store_true", help=f"replay the bundled sample ({SAMPLE.name}): a demo")
    run.add_argument("--fast", action="store_true", help="replay a file as fast as possible instead of in real time")
    run.add_argument("--mqtt", choices=("on", "off", "auto"),
                     help="on: publish (retry an absent broker); off: print states; auto: broker if reachable at start")
    run.add_argument("--raw", action="store_true", help="print every window's result (predict --windows schema), gate off")
    run.add_argument("--log-level", choices=LOG_LEVELS, help="default: logging.level")
    run.set_defaults(func=cmd_run)

    devices = sub.add_parser("devices", parents=[sub_common], help="list audio input devices")
    devices.set_defaults(func=cmd_devices)

    from . import install  # the service installer (edge/install.py)

    installer = sub.add_parser("install-service", parents=[sub_common], help=install.HELP, description=install.__doc__)
    install.configure_parser(installer)
    installer.set_defaults(func=install.cmd_install)

    from . import bench  # the benchmarks (edge/bench.py)

    bencher = sub.add_parser("bench", parents=[sub_common], help=bench.HELP, description=bench.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.configure_parser(bencher)
    bencher.set_defaults(func=bench.cmd_bench)

    app = sub.add_parser("app", parents=[sub_common], help="the web page: upload or record speech, see the emotion",
                         description="Serve the web page (Streamlit, the app extra): upload or record speech and see "
                                     "its emotion, probabilities, spectrogram and timeline, with the edge runtime.")
    app.add_argument("--model", metavar="DIR", help="model bundle directory (default: model.path, else the shipped model)")
    app.add_argument("--port", type=int, default=8501, metavar="N", help="TCP port (default: 8501)")
    app.add_argument("--address", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for the LAN)")
    app.set_defaults(func=cmd_app)
    return parser


def cmd_app(args: argparse.Namespace) -> int:
    from .app_core import launch

    launch(args.model, args.port, args.address, args.config)  # becomes streamlit: does not return


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
        if path == str(SAMPLE):
            print(f"moodmic: {sample_note(model.bundle)}", file=sys.stderr, flush=True)
        try:
            result = predict_file(model, path, settings.audio.max_file_seconds, settings.gate)
        except MoodmicError as exc:  # report it and go on: one bad file must not cost the others
            _error(exc)
            status = status or exc.exit_code
            continue
        print(json.dumps(result.to_dict(with_windows=args.windows)), flush=True)
    return status


def cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import signal

    from .config import load_settings
    from .daemon import Daemon, decision_hop_frames
    from .model import EmotionModel
    from .sources import open_source

    settings = load_settings(args.config)
    audio = settings.audio
    source_spec = f"file:{SAMPLE}" if args.sample else args.source or audio.source
    audio = dataclasses.replace(audio, source=source_spec, device=args.device or audio.device)
    mqtt = dataclasses.replace(settings.mqtt, mode=args.mqtt or settings.mqtt.mode)
    settings = dataclasses.replace(settings, audio=audio, mqtt=mqtt)
    logging.basicConfig(level=args.log_level or settings.logging.level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = EmotionModel.load(args.model or settings.model.path or None, threads=settings.model.threads)
    decision_hop_frames(settings, model.bundle.features)  # a config that cannot fit this bundle: exit 78 before any audio
    if args.sample:
        print(f"moodmic: {sample_note(model.bundle)}", file=sys.stderr, flush=True)
    source = open_source(audio.source, model.bundle.features.sample_rate, device=audio.device,
                         capture_rate=audio.capture_rate, block_seconds=audio.block_seconds,
                         queue_seconds=audio.queue_seconds, fast=args.fast)
    daemon = Daemon(settings, model, source, _publisher(settings, model, raw=args.raw), raw=args.raw)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop())
    return daemon.run()


def _publisher(settings, model, raw: bool):
    import logging
    import socket

    from .daemon import StdoutPublisher

    m = settings.mqtt
    if m.mode == "auto":
        try:
            socket.create_connection((m.host, m.port), timeout=2).close()
        except OSError as exc:
            logging.getLogger("edge.cli").warning("no MQTT broker at %s:%d (%s): printing states to stdout",
                                                  m.host, m.port, exc)
            return StdoutPublisher(states=not raw)
    elif m.mode == "off":
        return StdoutPublisher(states=not raw)
    from .identity import device_identity
    from .mqtt import MqttPublisher
    from .state_dir import check_writable, state_dir

    where = state_dir(m)
    device = device_identity(m, where)  # before the check creates the folder: its age tells an old install
    check_writable(where)
    return MqttPublisher(m, labels=model.labels, model_name=model.bundle.name, model_sha=model.bundle.tflite_sha256,
                         spool_path=where / "spool.jsonl", device=device)


def cmd_devices(args: argparse.Namespace) -> int:
    from .sources import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no audio input devices found (is a microphone plugged in? is the user in group 'audio'?)")
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['default_rate']:.0f} Hz)")
    return EXIT_OK


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
