"""`moodmic-convert RUN_DIR --out BUNDLE`: the offline conversion script.

Reads the trainer's run directory (run.json + the Keras model), recomputes representative windows
(training side) and validation clips from the data and split run.json records (or `--data`),
converts in a child process per mode, checks the graph is builtin-only, measures parity with the
Keras model through the daemon's interpreter wrapper, refuses a bundle that fails the gate, and
writes the bundle with its figures. Several `--mode`s write one bundle each under --out/<mode>.

A model that outputs logits (trainer `--logits`) gets a bundle of output kind "logits" with the
temperature of `--calibration` (`moodmic-train calibrate` writes it; 1.0 without), which
edge.model applies as softmax(logits / T); parity compares softmax(logits) of both models. A run
trained on every clip has no validation side: `--parity-side train` runs the gate on the windows
of the training clips instead, and the bundle says so (conversion.parity_side).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from edge.errors import ConfigError, ConversionError, MoodmicError, require_extra

from . import build, graph, parity, representative
from .run_dir import load_run

DEFAULT_MODE = "dynamic"  # measured: as small as int8, fastest under XNNPACK, ~99.5% agreement (README)
LICENSE = ("model weights trained on RAVDESS (Livingstone & Russo 2018, doi:10.1371/journal.pone.0196391): "
           "CC BY-NC-SA 4.0, non-commercial use only")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moodmic-convert", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a moodmic-train run directory (holds run.json)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--mode", action="append", choices=build.MODES,
                   help=f"conversion mode; repeat to compare several (default: {DEFAULT_MODE})")
    p.add_argument("--data", type=Path, help="corpus folder or manifest (default: the one run.json records)")
    p.add_argument("--rep-size", type=int, default=300, help="representative windows (default 300)")
    p.add_argument("--rep-seed", type=int, default=0, help="seed for choosing them (default 0)")
    p.add_argument("--rep-dir", type=Path, help="take representative windows from this audio folder instead")
    p.add_argument("--min-agreement", type=float, default=parity.MIN_AGREEMENT,
                   help=f"argmax agreement a bundle needs (default {parity.MIN_AGREEMENT})")
    p.add_argument("--max-ua-drop", type=float, default=parity.MAX_UA_DROP,
                   help=f"largest unweighted-accuracy loss allowed (default {parity.MAX_UA_DROP})")
    p.add_argument("--name", help="bundle name (default: moodmic-<arch>-<mode>)")
    p.add_argument("--parity-side", choices=("val", "train"), default="val",
                   help="clips the parity gate runs on: the validation side (default) or, for a run trained on "
                        "every clip, the training side")
    p.add_argument("--abstain", type=Path,
                   help="abstain.json of moodmic-train abstain: its threshold goes into the bundle (output.abstain_below), "
                        "with the smoothing span it was chosen under where it names one (output.smoothing_windows)")
    p.add_argument("--calibration", type=Path,
                   help="calibration.json of moodmic-train calibrate: its temperature goes into a logits bundle")
    return p


def convert_run(args: argparse.Namespace) -> tuple[list[parity.Parity], list[ConversionError]]:
    """Convert every requested mode; a mode that fails the gate writes nothing, the others go on."""
    from edge.bundle import write_bundle
    from edge.features import Frontend
    from edge.interpreter import TFLiteModel
    from trainer.abstain import read_abstain

    run = load_run(args.run_dir, args.data, args.parity_side)
    calibration = _calibration(args.calibration, run.outputs_logits)
    abstain = read_abstain(args.abstain) if args.abstain else None
    frontend = Frontend(run.features)
    hop = run.features.hop_frames(run.eval_hop_s)
    modes = args.mode or [DEFAULT_MODE]
    rep = None
    if "int8" in modes:
        if args.rep_dir:
            rep = representative.from_folder(args.rep_dir, frontend, hop, args.rep_size, args.rep_seed)
        else:
            by_label = representative.windows_by_label(run.train_clips, frontend, hop)
            rep = representative.select(by_label, frontend, args.rep_size, args.rep_seed)
        print(f"representative set: {len(rep)} windows from the training side", file=sys.stderr)
    val = run.side_audio(args.parity_side)
    print(f"parity gate on the {'validation' if args.parity_side == 'val' else 'training'} side: {len(val)} clips",
          file=sys.stderr)
    keras_infer = _memoized(run.keras_infer())  # every mode is compared with the same Keras outputs (probabilities)
    rows, failures = [], []
    for mode in modes:
        tflite = build.convert(run.run_dir, mode, rep if mode == "int8" else None)
        ops = graph.op_names(tflite)
        graph.check_builtin_only(ops)
        tflite_infer = TFLiteModel(tflite).run
        if run.outputs_logits:
            tflite_infer = _softmaxed(tflite_infer)
        figures = parity.measure(mode, tflite, keras_infer, tflite_infer, val, frontend, hop, run.labels)
        rows.append(figures)
        print(parity.table([figures]).splitlines()[-1], file=sys.stderr)
        try:
            parity.check(figures, args.min_agreement, args.max_ua_drop)
        except ConversionError as exc:
            print(f"moodmic-convert: {exc}", file=sys.stderr)
            failures.append(exc)
            continue
        out = args.out / mode if len(modes) > 1 else args.out
        write_bundle(
            out, tflite, name=args.name or f"moodmic-{run.arch}-{mode}", labels=run.labels, features=run.features,
            eval_hop_s=run.eval_hop_s, license=LICENSE,
            output_kind="logits" if run.outputs_logits else "probabilities",
            temperature=calibration["temperature"] if calibration else 1.0,
            abstain_below=float(abstain["abstain_below"]) if abstain else 0.0,
            smoothing_windows=int(abstain.get("smoothing_windows") or 0) if abstain else 0,
            conversion={"mode": mode, "ops": sorted(set(ops)), "parity": figures.to_dict(),
                        "parity_side": {"val": "validation clips of the run", "train": "training clips of the run (it has "
                                        "no validation side): agreement with Keras, not held-out accuracy"}[args.parity_side],
                        "calibration": calibration or {},
                        "abstain": {k: abstain[k] for k in ("abstain_below", "smoothing_windows", "rule", "source")
                                    if k in abstain} if abstain else {},
                        "representative": {"windows": 0 if rep is None else len(rep), "seed": args.rep_seed,
                                           "source": str(args.rep_dir) if args.rep_dir else "training split"},
                        "gate": {"min_agreement": args.min_agreement, "max_ua_drop": args.max_ua_drop}},
            training=run.training_summary(),
        )
        print(f"wrote {out}", file=sys.stderr)
    return rows, failures


def _calibration(path: Path | None, logits: bool) -> dict | None:
    if path is None:
        return None
    if not logits:
        raise ConfigError(f"--calibration {path}: the run's model outputs probabilities; a temperature needs a logits model")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if float(data["temperature"]) <= 0:
            raise ValueError("temperature must be > 0")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--calibration {path}: not a calibration.json of moodmic-train calibrate ({exc})") from exc
    return {**data, "source": path.name}


def _softmaxed(infer):
    from edge.model import softmax

    return lambda x: softmax(infer(x))


def _memoized(infer):
    import hashlib

    seen: dict[str, object] = {}

    def run(x):
        key = hashlib.sha1(x.tobytes()).hexdigest()
        if key not in seen:
            seen[key] = infer(x)
        return seen[key]

    return run


def main(argv: Sequence[str] | None = None) -> int:
    try:
        require_extra("train")  # a device install (.[edge]) has no TensorFlow: one line, exit 69, not a traceback
    except MoodmicError as exc:
        print(f"moodmic-convert: error: {exc}", file=sys.stderr)
        return exc.exit_code
    args = build_parser().parse_args(argv)
    try:
        rows, failures = convert_run(args)
    except MoodmicError as exc:
        print(f"moodmic-convert: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(parity.table(rows))
    print(json.dumps([r.to_dict() for r in rows]), file=sys.stderr)
    for exc in failures:
        print(f"moodmic-convert: error: {exc}", file=sys.stderr)
    return failures[0].exit_code if failures else 0


if __name__ == "__main__":
    sys.exit(main())
