"""`moodmic-bench`: every row of BENCHMARKS.md, moodmic against the stack it replaces, on the desktop.

The rows are those of BENCHMARKS.md (listed in edge/bench.py's docstring, which measures rows 3-6).

Rows 1-2 (bench/rows.py) and the float32/int8 conversions for rows 3 and 5 (the converter) need the
`train` extra (TensorFlow); without it they are skipped with a note. Rows 3-6 are measured by
edge/bench.py, the code `moodmic bench` runs on a device with the edge install alone.

Per-window cost is reported as CPU time of the measuring process (robust to a busy machine) and as
wall time; the machine's load average is written beside the results.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from edge import bench as device
from edge.errors import ConversionError, MoodmicError

ROWS_MODULE = "bench.rows"
NEEDS = ("tensorflow", "tf_keras", "keras_self_attention", "librosa", "trainer", "converter")


def configure_parser(p: argparse.ArgumentParser) -> None:
    device.configure_parser(p, given_models=False)
    p.add_argument("--run", metavar="RUN_DIR", type=Path,
                   help="trainer run directory of the seed architecture for rows 1-3 and 5 (default: a freshly "
                        "initialised seed model; cost does not depend on the weights)")


def tensorflow_missing() -> str:
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)} (pip install 'moodmic[train]')" if missing else ""


def desktop_rows(args: argparse.Namespace, res: dict[str, Any], work: Path) -> tuple[dict[str, Path], Path | None]:
    """Rows 1-2 into `res`; the seed model converted to float32 and int8 (rows 3, 5) and MobileNetV2 (yardstick)."""
    rows, quick = res["rows"], res["quick"]
    tf_note = tensorflow_missing()
    tflites: dict[str, Path] = {}
    mobilenet: Path | None = None
    run_dir = args.run or work / "fresh-run"
    if not tf_note:
        res["model_source"] = (f"trained weights from `{args.run}`" if args.run else
                               "a freshly initialised seed model (cost does not depend on the weights)")
        prep = {"kind": "prepare", "fresh_run_dir": None if args.run else str(run_dir), "labels": res["bundle"]["labels"],
                "mobilenet_out": None if quick else str(work / "mobilenet_v2.tflite")}
        (work / "prepare.json").write_text(json.dumps(prep))
        child = device.run_child([sys.executable, "-m", ROWS_MODULE, "row", str(work / "prepare.json")])
        if child.rc != 0:
            tf_note = f"preparing the Keras model failed: {child.error()}"
    if tf_note:
        for key in ("1", "2"):
            rows[key].skipped = f"skipped: {tf_note}"
        for key, mode in device.CONVERTED_ROWS.items():
            rows[key].skipped = f"skipped: converting the seed model to {mode} needs TensorFlow ({tf_note})"
        return tflites, mobilenet
    if prep["mobilenet_out"] and Path(prep["mobilenet_out"]).is_file():
        mobilenet = Path(prep["mobilenet_out"])
    # The project's converter (a batch-1 clone, builtin ops), each conversion in its own process.
    from converter.build import convert

    rep = device.representative(res["wav"], res["params"], 20 if quick else 200)
    for mode in device.CONVERTED_ROWS.values():
        try:
            tflite = convert(run_dir, mode, rep if mode == "int8" else None)
        except ConversionError as exc:
            res["notes"].append(str(exc))
            continue
        tflites[mode] = work / f"{mode}.tflite"
        tflites[mode].write_bytes(tflite)
    run_json = json.loads((run_dir / "run.json").read_text())
    keras_model = run_dir / run_json["keras_model"]
    res["run_name"] = run_json.get("name")
    for key, mode in (("1", "predict"), ("2", "call")):
        rows[key].child, rows[key].data = device.measure_row(
            {**res["base"], "kind": "upstream", "mode": mode, "keras_model": str(keras_model)}, work, f"row{key}",
            module=ROWS_MODULE)
    return tflites, mobilenet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moodmic-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    args = parser.parse_args(argv)
    command = device.command_line("moodmic-bench", args, f" --run {args.run}" if args.run else "")
    try:
        return device.run_bench(args, command, desktop_rows, producer="`moodmic-bench` (bench/cli.py)")
    except MoodmicError as exc:
        print(f"moodmic-bench: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
