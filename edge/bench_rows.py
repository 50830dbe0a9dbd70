"""The child side of `moodmic bench`: one row measured in one fresh process (`python -m edge.bench_rows`).

    python -m edge.bench_rows row SPEC.json       measure one row, print one JSON line
    python -m edge.bench_rows prepare SPEC.json   (TensorFlow) a trainer-style run directory holding a
                                                  freshly initialised seed model, and MobileNetV2 float32

Every heavy import (TensorFlow, librosa, the trainer) happens inside a function, so importing this
module costs nothing and an edge install (no TensorFlow) can import it. The parent (edge/bench.py)
sets one thread everywhere through the environment before starting the process; TensorFlow rows
also set TensorFlow's own thread pools to 1 here.

Per-window cost is taken twice: wall time (time.perf_counter) and CPU time of the whole process
(time.process_time, i.e. every thread of this process, so TensorFlow's executor threads count too).
The CPU time is what the measured code itself cost, whatever else the machine is doing; wall time
also contains waiting for a core on a busy machine.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_T0_WALL = time.perf_counter()
_T0_CPU = time.process_time()


def _stats(values: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max())}


class _Clock:
    """Wall and process-CPU time in milliseconds since construction."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = ((wall - self.wall) * 1000.0, (cpu - self.cpu) * 1000.0)
        self.wall, self.cpu = wall, cpu
        return out


def _loop(n_warmup: int, n_windows: int, features, infer) -> dict[str, Any]:
    """Run features() -> x and infer(x) for warm-up + measured windows; per-window wall and CPU ms."""
    rec: dict[str, list[float]] = {k: [] for k in ("feat_wall", "feat_cpu", "inf_wall", "inf_cpu")}
    warm = _Clock()
    for i in range(n_warmup + n_windows):
        if i == n_warmup:
            warmup_wall, warmup_cpu = warm.lap()
        clock = _Clock()
        x = features(i)
        fw, fc = clock.lap()
        infer(x)
        iw, ic = clock.lap()
        if i >= n_warmup:
            for key, v in zip(rec, (fw, fc, iw, ic)):
                rec[key].append(v)
    if n_warmup == 0:
        warmup_wall = warmup_cpu = 0.0
    total_wall = [a + b for a, b in zip(rec["feat_wall"], rec["inf_wall"])]
    total_cpu = [a + b for a, b in zip(rec["feat_cpu"], rec["inf_cpu"])]
    return {
        "windows": n_windows, "warmup_windows": n_warmup, "warmup_wall_ms": warmup_wall, "warmup_cpu_ms": warmup_cpu,
        **{k: _stats(v) for k, v in rec.items()},
        "total_wall": _stats(total_wall), "total_cpu": _stats(total_cpu),
    }


def _vm_hwm_mb() -> float | None:
    """Peak RSS of this process's address space. (Not ru_maxrss: across exec Linux keeps the parent's.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def _import_load_done() -> dict[str, float]:
    return {"import_load_wall_s": time.perf_counter() - _T0_WALL, "import_load_cpu_s": time.process_time() - _T0_CPU,
            "rss_after_load_mb": _vm_hwm_mb(),
            "loaded_at_epoch": time.time()}


# -- rows 1-2: the upstream stack ----------------------------------------------------------------
def _tf_one_thread():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.set_visible_devices([], "GPU")
    return tf


def row_upstream(spec: dict[str, Any]) -> dict[str, Any]:
    """librosa load + melspectrogram + power_to_db, then Keras `predict` (mode 'predict') or `model(x)`."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import librosa
    import numpy as np

    _tf_one_thread()
    from trainer.model import load_keras_model  # the seed architecture's custom objects (attention, focal loss)

    model = load_keras_model(spec["keras_model"], compile=False)
    loaded = _import_load_done()
    p = spec["features"]
    sr, hop_s, win_s, n_frames = p["sample_rate"], spec["hop_s"], spec["window_s"], p["n_frames"]

    def features(i: int):
        # What the upstream app did for every prediction: load the audio with librosa, then the
        # whole window's mel spectrogram in dB (relative to its loudest bin, as upstream did).
        y, _ = librosa.load(spec["wav"], sr=sr, offset=i * hop_s, duration=win_s)
        s = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=p["n_fft"], hop_length=p["hop_length"],
                                           n_mels=p["n_mels"], fmin=p["fmin"], fmax=p["fmax"], center=False)
        db = librosa.power_to_db(s, ref=np.max)
        x = np.zeros((n_frames, p["n_mels"]), np.float32)
        x[: min(n_frames, db.shape[1])] = db.T[:n_frames]
        return x[None]

    if spec["mode"] == "predict":
        def infer(x):
            return model.predict(x, verbose=0)
    else:
        def infer(x):
            return model(x, training=False).numpy()

    out = _loop(spec["warmup"], spec["windows"], features, infer)
    return {**loaded, **out, "model_bytes": Path(spec["keras_model"]).stat().st_size,
            "parameters": int(model.count_params())}


# -- rows 3-5: the moodmic frontend + LiteRT -------------------------------------------------------
def row_litert(spec: dict[str, Any]) -> dict[str, Any]:
    """soundfile blocks of one hop -> FeatureStream (only the new frames) -> the TFLite wrapper.

    With a bundle (the shipped path) the model is loaded exactly as the daemon loads it
    (EmotionModel.load: bundle checks, frontend, interpreter); a bare .tflite goes through the
    same interpreter wrapper (TFLiteModel: quantize, reset_all_variables, invoke, dequantize)."""
    import soundfile as sf

    from .features import FeatureParams, FeatureStream, Frontend

    if spec.get("bundle"):
        from .model import EmotionModel

        model = EmotionModel.load(spec["bundle"], threads=1)
        frontend, tfl, params = model.frontend, model.tflite, model.bundle.features
        infer = model.probabilities
    else:
        from .interpreter import TFLiteModel

        params = FeatureParams.from_dict(spec["features"])
        frontend, tfl = Frontend(params), TFLiteModel(spec["tflite"], threads=1)
        infer = tfl.run
    loaded = _import_load_done()
    hop_frames = params.hop_frames(spec["hop_s"])
    hop_samples = hop_frames * params.hop_length
    stream = FeatureStream(frontend, hop_frames)
    audio = sf.SoundFile(spec["wav"])
    # Fill the stream up to its first complete window (not timed: a daemon does this once).
    first: list = []
    while not first:
        first = stream.push(audio.read(hop_samples, dtype="float32"))

    def features(i: int):
        windows = stream.push(audio.read(hop_samples, dtype="float32"))
        if len(windows) != 1:
            raise RuntimeError(f"expected one window per hop, got {len(windows)} (audio too short?)")
        return windows[0].features[None]

    out = _loop(spec["warmup"], spec["windows"], features, infer)
    path = Path(spec["bundle"]) / "model.tflite" if spec.get("bundle") else Path(spec["tflite"])
    content = path.read_bytes()
    return {**loaded, **out, "model_bytes": len(content), "runtime": tfl.runtime, "input_dtype": tfl.input_spec.dtype}


def yardstick(spec: dict[str, Any]) -> dict[str, Any]:
    """MACs of each graph, and MobileNetV2 float32 timed on this machine (for the Raspberry Pi estimate)."""
    out: dict[str, Any] = {"macs": {name: count_macs(Path(path).read_bytes()) for name, path in spec["tflites"].items()}}
    if spec.get("mobilenet"):
        out["mobilenet"] = time_invokes(spec["mobilenet"], spec["invokes"])
    return out


def time_invokes(tflite: str, n: int, warmup: int = 3) -> dict[str, Any]:
    """CPU and wall ms per invoke of a model on a constant input (the MobileNetV2 yardstick)."""
    import numpy as np

    from .interpreter import TFLiteModel

    m = TFLiteModel(tflite, threads=1)
    x = np.random.default_rng(0).random(m.input_spec.shape[1:], dtype=np.float32)
    walls, cpus = [], []
    for i in range(warmup + n):
        clock = _Clock()
        m.invoke(x)
        w, c = clock.lap()
        if i >= warmup:
            walls.append(w)
            cpus.append(c)
    return {"invokes": n, "wall": _stats(walls), "cpu": _stats(cpus), "macs": count_macs(Path(tflite).read_bytes())["total"]}


def count_macs(content: bytes) -> dict[str, Any]:
    """Multiply-accumulates per invoke, from the .tflite graph's op list and tensor shapes."""
    import numpy as np

    from .interpreter import _interpreter_class

    cls, _ = _interpreter_class()
    interp = cls(model_content=content, num_threads=1)
    interp.allocate_tensors()
    shapes = {t["index"]: [int(d) for d in t["shape"]] for t in interp.get_tensor_details()}
    by_op: dict[str, int] = {}
    other_elements = 0
    for op in interp._get_ops_details():
        name, ins, outs = op["op_name"], [int(i) for i in op["inputs"]], [int(o) for o in op["outputs"]]
        if name == "DELEGATE" or not outs:
            continue
        out = shapes.get(outs[0], [0])
        n_out = int(np.prod(out)) if out else 1
        if name == "CONV_2D":  # filter (Cout, KH, KW, Cin)
            _, kh, kw, cin = shapes[ins[1]]
            macs = n_out * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":  # filter (1, KH, KW, Cout)
            macs = n_out * shapes[ins[1]][1] * shapes[ins[1]][2]
        elif name == "FULLY_CONNECTED":  # weights (units, in)
            macs = n_out * shapes[ins[1]][-1]
        elif name == "BATCH_MATMUL":  # (.., M, K) x (.., K, N)
            macs = n_out * shapes[ins[0]][-1]
        elif name in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM"):
            batch, steps, feat = shapes[ins[0]]
            units = shapes[ins[5]][0] if ins[5] >= 0 else shapes[ins[6]][0]  # recurrent_to_forget (units, units)
            macs = batch * steps * 4 * units * (feat + units)
        else:
            other_elements += n_out
            continue
        by_op[name] = by_op.get(name, 0) + macs
    return {"total": sum(by_op.values()), "by_op": by_op, "elementwise_outputs": other_elements}


# -- prepare (TensorFlow): a run directory for a freshly initialised seed model, MobileNetV2 --------
def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    tf = _tf_one_thread()
    out: dict[str, Any] = {}
    if spec.get("fresh_run_dir"):
        from edge.features import FeatureParams
        from trainer.model import build_model

        run_dir = Path(spec["fresh_run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        params = FeatureParams()
        # The plain seed architecture (probabilities out), as a run written without model settings
        # ("settings": {}) is rebuilt by the converter; trainers that take model settings get the same.
        import inspect

        kwargs: dict[str, Any] = {}
        if "settings" in inspect.signature(build_model).parameters:
            from trainer.settings import ModelSettings

            kwargs["settings"] = ModelSettings.from_dict(None)
        model = build_model("seed", len(spec["labels"]), params, None, **kwargs)
        model.save(run_dir / "model.keras")
        (run_dir / "run.json").write_text(json.dumps({
            "format_version": 1, "name": "bench-fresh-seed", "labels": spec["labels"], "features": params.to_dict(),
            "eval_hop_s": 1.0, "input_layout": "time_mel", "arch": "seed", "keras_model": "model.keras",
            "parameters": int(model.count_params()), "settings": {},
        }, indent=2))
        from trainer.run import rebuild_model

        rebuild_model(run_dir, batch_size=1)  # what the converter will do: fail here, with the reason
        out["parameters"] = int(model.count_params())
    if spec.get("mobilenet_out"):
        import tf_keras as keras

        net = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), alpha=1.0)
        inp = keras.Input(shape=(224, 224, 3), batch_size=1)
        clone = keras.Model(inp, net(inp))
        Path(spec["mobilenet_out"]).write_bytes(tf.lite.TFLiteConverter.from_keras_model(clone).convert())
    return out


def main(argv: list[str]) -> int:
    kind, spec_path = argv[0], argv[1]
    spec = json.loads(Path(spec_path).read_text())
    if kind == "prepare":
        result = prepare(spec)
    elif spec["kind"] == "upstream":
        result = row_upstream(spec)
    elif spec["kind"] == "litert":
        result = row_litert(spec)
    elif spec["kind"] == "yardstick":
        result = yardstick(spec)
    else:
        raise SystemExit(f"unknown row kind {spec['kind']!r}")
    result["vm_hwm_mb"] = _vm_hwm_mb()
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
