"""What would Whisper's encoder cost on the device? (research/VARIANTS.md, variant 23)

    python research/whisper_cost.py MODEL_BIN --out OUT [--depth 3] [--invokes 50]

The Whisper probe reads speech best at depth 3 of Whisper base's encoder; shipping it means running
the encoder that far on every device window. This builds that part (the two convolutions, the
positions and `--depth` transformer layers, then each channel's mean and standard deviation over the
window: the probe's input) as a TensorFlow graph from the same model.bin, checks it against
research/whisper_encoder.py on a real clip's window, converts it to TFLite as `moodmic-convert`
does (float32, and dynamic range: int8 weights), and times each on one thread with LiteRT
(edge.bench_rows.time_invokes, as BENCHMARKS.md times its graphs), next to moodmic's default model
timed the same way in the same run. Input: Whisper's 80-band log-mel of one device window
(edge.features' window length, 100 frames a second). Inference only: Whisper's own log-mel front
end and the probe's logistic regression (1024 x 8) come on top, both small.
Writes OUT/whisper_cost.json and OUT/whisper_cost.md; the .tflite files stay in OUT.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from clip_probe import pooled  # research/, first on sys.path when run as a script
from whisper_encoder import HOP, RATE, WhisperEncoder, log_mel  # research/, first on sys.path when run as a script

from edge.audio import load_audio
from edge.bench import machine
from edge.bench_rows import time_invokes
from edge.bundle import DEFAULT_BUNDLE
from edge.features import FeatureParams
from edge.interpreter import TFLiteModel


def window_frames() -> int:
    """Whisper mel frames of one device window (even: the second convolution halves them)."""
    return FeatureParams().window_samples // HOP // 2 * 2


def graph(encoder: WhisperEncoder, depth: int, frames: int):
    """A tf.function (1, frames, 80) log-mel -> (1, 2 x width): the encoder to `depth`, mean and deviation."""
    import tensorflow as tf

    w = {k: tf.constant(v) for k, v in encoder.w.items() if v.ndim}
    heads = encoder.heads

    def conv(x, name, stride):  # Whisper's kernel-3 convolutions pad one frame on each side
        kernel = tf.transpose(w[name + "/weight"], (2, 1, 0))  # (out, in, k) -> (k, in, out)
        return tf.nn.conv1d(tf.pad(x, [[0, 0], [1, 1], [0, 0]]), kernel, stride, "VALID") + w[name + "/bias"]

    def norm(x, key):
        mu, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mu) * tf.math.rsqrt(var + 1e-5) * w[key + "/gamma"] + w[key + "/beta"]

    def dense(x, key):
        return tf.matmul(x, w[key + "/weight"], transpose_b=True) + w[key + "/bias"]

    @tf.function(input_signature=[tf.TensorSpec((1, frames, 80), tf.float32, name="log_mel")])
    def encode(mel):
        x = tf.nn.gelu(conv(mel, "conv1", 1), approximate=False)
        x = tf.nn.gelu(conv(x, "conv2", 2), approximate=False)
        x = x + w["position_encodings/encodings"][: frames // 2]
        t = frames // 2
        for i in range(depth):
            p = f"layer_{i}/"
            q, k, v = tf.split(dense(norm(x, p + "self_attention/layer_norm"), p + "self_attention/linear_0"), 3, -1)
            d = q.shape[-1]
            q, k, v = (tf.transpose(tf.reshape(a, (1, t, heads, d // heads)), (0, 2, 1, 3)) for a in (q, k, v))
            att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / float(np.sqrt(d // heads)))
            ctx = tf.reshape(tf.transpose(tf.matmul(att, v), (0, 2, 1, 3)), (1, t, d))
            x = x + dense(ctx, p + "self_attention/linear_1")
            h = tf.nn.gelu(dense(norm(x, p + "ffn/layer_norm"), p + "ffn/linear_0"), approximate=False)
            x = x + dense(h, p + "ffn/linear_1")
        mean, var = tf.nn.moments(x, axes=[1])
        return tf.concat([mean, tf.sqrt(var)], axis=-1)

    return encode


def convert(encode, dynamic: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([encode.get_concrete_function()], encode)
    if dynamic:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float activations
    return converter.convert()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="a faster-whisper (CTranslate2) model.bin of Whisper")
    ap.add_argument("--depth", type=int, default=3, help="transformer layers run (the probe's best: 3)")
    ap.add_argument("--clip", type=Path, default=DEFAULT_BUNDLE.parents[1] / "samples" / "speech.flac",
                    help="audio whose window checks the graph (default: edge's bundled speech sample)")
    ap.add_argument("--invokes", type=int, default=50)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    encoder = WhisperEncoder(a.model)
    if not 0 <= a.depth <= encoder.layers:
        raise SystemExit(f"--depth {a.depth}: this encoder has {encoder.layers} layers")
    frames = window_frames()
    audio = load_audio(a.clip, RATE)
    audio = np.pad(audio, (0, max(0, frames * HOP - len(audio))))[: frames * HOP]
    mel = log_mel(audio)[:, :frames].T[None].astype(np.float32)  # (1, frames, 80)
    reference = pooled(encoder(mel[0].T)[a.depth])  # the NumPy encoder's output at that depth, pooled
    encode = graph(encoder, a.depth, frames)
    a.out.mkdir(parents=True, exist_ok=True)
    layer = {k: v for k, v in encoder.w.items() if k.startswith("layer_0/")}
    params = sum(v.size for k, v in encoder.w.items() if k.startswith("conv")) + a.depth * sum(v.size for v in layer.values())
    rows = []
    for mode in ("float32", "dynamic"):
        path = a.out / f"whisper_depth{a.depth}_{mode}.tflite"
        path.write_bytes(convert(encode, mode == "dynamic"))
        out = TFLiteModel(str(path), threads=1).invoke(mel[0])
        timing = time_invokes(str(path), a.invokes)
        rows.append({"mode": mode, "bytes": path.stat().st_size, "max_abs_diff": float(np.abs(out.ravel() - reference).max()),
                     "reference_scale": float(np.abs(reference).max()), "macs": timing["macs"],
                     "wall_ms": timing["wall"], "cpu_ms": timing["cpu"]})
        print(mode, rows[-1]["bytes"], rows[-1]["max_abs_diff"], timing["wall"], flush=True)
    shipped = DEFAULT_BUNDLE / "model.tflite"  # the yardstick, timed the same way in the same run
    timing = time_invokes(str(shipped), a.invokes)
    rows.append({"mode": "moodmic's default model", "bytes": shipped.stat().st_size, "max_abs_diff": None,
                 "macs": timing["macs"], "wall_ms": timing["wall"], "cpu_ms": timing["cpu"]})
    host = machine()
    summary = {"model_bin": str(a.model), "depth": a.depth, "parameters": int(params), "window_frames": frames,
               "window_seconds": frames * HOP / RATE, "machine": f"{host['cpu']}, {host['cores']} cores",
               "rows": rows}
    (a.out / "whisper_cost.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    lines = [f"# Whisper base's encoder to depth {a.depth} on one device window (research/whisper_cost.py)", "",
             f"{params / 1e6:.1f} M parameters; input {frames} Whisper mel frames ({frames * HOP / RATE:.2f} s); "
             f"output mean and deviation at depth {a.depth}. LiteRT, 1 thread; {summary['machine']}. "
             "Difference: largest absolute difference from research/whisper_encoder.py's pooled output "
             f"(largest value {rows[0]['reference_scale']:.2f}).", "",
             "| graph | size | M MACs | ms per window (wall, median) | ms per window (CPU, median) | difference |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3g}"
        lines.append(f"| {r['mode']} | {r['bytes'] / 1e6:.1f} MB | {r['macs'] / 1e6:.0f} | {r['wall_ms']['median']:.2f} | "
                     f"{r['cpu_ms']['median']:.2f} | {diff} |")
    (a.out / "whisper_cost.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
