"""The device side's rows of `moodmic bench`: one row measured in one fresh process.

    python -m edge.bench_rows row SPEC.json   measure the row SPEC's "kind" names, print one JSON line

Kinds: "litert" (the moodmic frontend + the TFLite wrapper: a bundle as the daemon loads it, or a bare
.tflite) and "yardstick" (MACs of .tflite graphs, a MobileNetV2 .tflite timed). Nothing here imports
TensorFlow, librosa, the trainer or the converter: this module runs on a device with the edge install.
The desktop's rows (the upstream TensorFlow/librosa stack, bench/rows.py) reuse its measuring loop and
`main` with their own kinds. The parent (edge/bench.py) sets one thread everywhere through the
environment before starting the process.

Per-window cost is taken twice: wall time (time.perf_counter) and CPU time of the whole process
(time.process_time, i.e. every thread of this process, so a runtime's worker threads count too).
The CPU time is what the measured code itself cost, whatever else the machine is doing; wall time
also contains waiting for a core on a busy machine.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

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


def measure_loop(n_warmup: int, n_windows: int, features, infer) -> dict[str, Any]:
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


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """Peak resident set of a process's current address space (VmHWM), in MB. (Not ru_maxrss: across
    exec Linux keeps the high-water mark of the parent's address space.)"""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None


def import_load_done() -> dict[str, float | None]:
    return {"import_load_wall_s": time.perf_counter() - _T0_WALL, "import_load_cpu_s": time.process_time() - _T0_CPU,
            "rss_after_load_mb": vm_hwm_mb(),
            "loaded_at_epoch": time.time()}


# -- rows 3-5: the moodmic frontend + LiteRT -------------------------------------------------------
def row_litert(spec: dict[str, Any]) -> dict[str, Any]:
    """soundfile blocks of one hop -> FeatureStream (only the new frames) -> the TFLite wrapper.

    With a bundle (the shipped path) the model is loaded exactly as the daemon loads it
    (EmotionModel.load: bundle checks, frontend, interpreter); a bare .tflite goes through the
    same interpreter wrapper (TFLiteModel: quantize, reset_all_variables, invoke, dequantize)."""
    import soundfile as sf

    from .features import FeatureParams, FeatureStream, Frontend

    infer: Callable[[np.ndarray], np.ndarray]  # windows -> the model's outputs
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
    loaded = import_load_done()
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

    out = measure_loop(spec["warmup"], spec["windows"], features, infer)
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


ROWS = {"litert": row_litert, "yardstick": yardstick}


def main(argv: list[str], rows: dict[str, Any] | None = None) -> int:
    """`row SPEC.json`: run the function `rows` maps the spec's kind to, print its result on one line."""
    rows = ROWS if rows is None else rows
    if len(argv) != 2 or argv[0] != "row":
        raise SystemExit("usage: python -m MODULE row SPEC.json")
    spec = json.loads(Path(argv[1]).read_text())
    if spec.get("kind") not in rows:
        raise SystemExit(f"unknown row kind {spec.get('kind')!r} (this module measures {', '.join(rows)})")
    result = rows[spec["kind"]](spec)
    result["vm_hwm_mb"] = vm_hwm_mb()
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
