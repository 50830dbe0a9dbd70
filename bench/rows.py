"""The desktop's rows of `moodmic-bench`, each in its own fresh process (TensorFlow, librosa, the trainer).

    python -m bench.rows row SPEC.json

Kinds: "upstream" (rows 1-2: librosa load + melspectrogram + power_to_db, then Keras `predict` or
`model(x)`) and "prepare" (a trainer-style run directory holding a freshly initialised seed model, and
MobileNetV2 float32 for the Raspberry Pi yardstick). The measuring loop, the start-up clock and the
one-line result are edge/bench_rows.py's, so desktop and device rows are measured the same way.
"""

from __future__ import annotations

# First: edge.bench_rows starts the import + model load clock when it is imported.
from edge.bench_rows import import_load_done, main, measure_loop  # isort: skip

import json
import os
import sys
from pathlib import Path
from typing import Any


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
    # the seed architecture's custom objects (attention, focal loss)
    from trainer.model import load_keras_model

    model = load_keras_model(spec["keras_model"], compile=False)
    loaded = import_load_done()
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

    out = measure_loop(spec["warmup"], spec["windows"], features, infer)
    return {**loaded, **out, "model_bytes": Path(spec["keras_model"]).stat().st_size,
            "parameters": int(model.count_params())}


def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """A run directory for a freshly initialised seed model (fresh_run_dir), MobileNetV2 float32 (mobilenet_out)."""
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


ROWS = {"upstream": row_upstream, "prepare": prepare}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], ROWS))
