"""Which layers lose precision under full-int8 quantization: `python -m converter.quant_debug RUN_DIR`.

Runs TensorFlow's QuantizationDebugger on the run's batch-1 model with the same representative
set the converter uses, and prints the layers whose int8 output differs most from float
(root-mean-square error in units of the layer's quantization step, `rmse/scale`; ~0.29 is the
ideal rounding error of one step), then the argmax agreement of selective quantizations that keep
the worst op types in float.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m converter.quant_debug", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--rep-size", type=int, default=300)
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)

    import tensorflow as tf

    from edge.features import Frontend, file_windows, stack
    from edge.interpreter import TFLiteModel
    from trainer.run import rebuild_model

    from . import representative
    from .run_dir import load_run

    run = load_run(args.run_dir)
    frontend = Frontend(run.features)
    hop = run.features.hop_frames(run.eval_hop_s)
    rep = representative.select(representative.windows_by_label(run.train_clips, frontend, hop), frontend,
                                args.rep_size, 0)
    val = stack([w for audio, _ in run.validation_audio() for w in file_windows(frontend, audio, hop)])
    model = rebuild_model(args.run_dir, batch_size=1)
    reference = np.concatenate([model(val[i : i + 1], training=False).numpy() for i in range(len(val))])

    def converter():
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[None]] for x in rep)
        return c

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter(), debug_dataset=lambda: ([x[None]] for x in rep[:64]))
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    for r in rows:
        r["rmse/scale"] = float(np.sqrt(float(r["mean_squared_error"])) / float(r["scale"])) if float(r["scale"]) else 0.0
    rows.sort(key=lambda r: -r["rmse/scale"])
    print(f"{'op':32s} {'tensor':60s} rmse/scale")
    for r in rows[: args.top]:
        print(f"{r['op_name']:32s} {r['tensor_name'][:60]:60s} {r['rmse/scale']:.2f}")

    worst_ops = []
    for r in rows:
        if r["op_name"] not in worst_ops:
            worst_ops.append(r["op_name"])
    print("\nselective quantization (argmax agreement with Keras on validation windows):")
    for k in range(0, min(4, len(worst_ops)) + 1):
        keep = worst_ops[:k]
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=keep) if keep else None
        dbg = tf.lite.experimental.QuantizationDebugger(
            converter=converter(), debug_dataset=lambda: ([x[None]] for x in rep[:8]), debug_options=options)
        tflite = dbg.get_nondebug_quantized_model()
        probs = TFLiteModel(tflite).run(val)
        agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
        print(f"  float kept for {keep or 'nothing'}: agreement {agreement:.3f}, {len(tflite) / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
