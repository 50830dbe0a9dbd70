"""Is YAMNet a teacher worth distilling from? (research/VARIANTS.md)

    python research/yamnet_probe.py YAMNET_TFLITE --out OUT [--data DIR]

YAMNet (Plakal & Ellis, tensorflow/models research/audioset/yamnet, Apache 2.0): a MobileNet v1 of
3.7 M parameters trained on AudioSet's 521 sound classes, from 0.96 s patches of its own 64-band
log-mel. YAMNET_TFLITE is a TFLite conversion of its published weights whose graph keeps the Keras
layer names (`yamnet_frames/layerN/...`, `global_average_pooling2d`), so that its hidden layers can be
read; it needs no TensorFlow, only the LiteRT interpreter the edge install already has.

Per clip: a patch every 0.48 s (YAMNet's own hop), each patch's activations of a few layers averaged
over time and frequency, then the clip's mean and standard deviation over its patches. Per fold of
trainer/recipe/folds.json: a logistic regression (standardised inputs, L2 strength C) fitted on the fold's 14
training actors, scored on its 2 validation and 4 test actors as whole clips. Nothing is fused and
nothing ships: a teacher for the shipped model's students would have to read emotion better, on
actors it never heard, than the recipe's fold ensembles already do. Writes OUT/yamnet_probe.json and
OUT/yamnet_probe.md; the pooled activations are cached in OUT/features.npz.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from clip_probe import (  # research/, first on sys.path when run as a script
    model_record,
    pooled_features,
    probe_rows,
    write_report,
)

from edge.audio import load_audio
from edge.data_path import DATA_HELP, data_dir
from trainer.corpus import load_corpus

RATE, PATCH, STEP = 16000, 15600, 7680  # YAMNet's input: 0.975 s of 16 kHz audio, a patch every 0.48 s
LAYERS = ("layer6", "layer10", "layer12", "embedding", "scores")  # shallow to deep; "embedding": the 1024 pooled values
CS = (0.01, 0.1)


def yamnet_layers(path: Path):
    """audio (16 kHz float) -> {layer: (patches, channels)}: the listed activations of every patch."""
    from ai_edge_litert.interpreter import Interpreter

    # preserve_all_tensors keeps the hidden layers readable after invoke (they are otherwise reused)
    it = Interpreter(str(path), experimental_preserve_all_tensors=True, num_threads=1)
    it.allocate_tensors()
    tensors = {}
    for t in it.get_tensor_details():
        first = t["name"].split(";")[0]
        if t["dtype"] != np.float32:
            continue
        if first.endswith("/pointwise_conv/relu/Relu") and first.split("/")[1] in LAYERS:
            tensors[first.split("/")[1]] = t["index"]
        elif first.endswith("global_average_pooling2d/Mean"):
            tensors["embedding"] = t["index"]
    tensors["scores"] = it.get_output_details()[0]["index"]
    if set(tensors) != set(LAYERS):
        raise SystemExit(f"{path}: no tensors named for {sorted(set(LAYERS) - set(tensors))}; "
                         "pass a YAMNet conversion that keeps the Keras layer names")
    source = it.get_input_details()[0]["index"]

    def run(audio: np.ndarray) -> dict[str, np.ndarray]:
        audio = np.pad(audio, (0, max(0, PATCH - len(audio))))
        out: dict[str, list] = {k: [] for k in LAYERS}
        for start in range(0, len(audio) - PATCH + 1, STEP):
            it.set_tensor(source, audio[start : start + PATCH][None].astype(np.float32))
            it.invoke()
            for k, i in tensors.items():
                x = it.get_tensor(i)
                out[k].append(x.reshape(-1, x.shape[-1]).mean(0))  # a hidden layer: mean over time x frequency
        return {k: np.array(v) for k, v in out.items()}

    return run


def features(corpus, model: Path, cache: Path) -> dict[str, np.ndarray]:
    """{layer: (clips, 2 x channels)}: each clip's mean and standard deviation over its patches."""
    run = None

    def layers(clip) -> dict[str, np.ndarray]:
        nonlocal run
        run = run or yamnet_layers(model)  # loaded only when the cache does not answer
        return run(load_audio(clip.path, RATE))

    return pooled_features(corpus.usable, layers, cache)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("yamnet", type=Path, help="a YAMNet .tflite that keeps the Keras layer names")
    ap.add_argument("--data", default=str(data_dir()), help=f"the corpus; default {DATA_HELP}")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    corpus = load_corpus(a.data)
    x = features(corpus, a.yamnet, a.out / "features.npz")
    folds, rows = probe_rows(x, corpus.usable, CS)
    write_report(a.out, "yamnet_probe", "YAMNet probe (research/yamnet_probe.py)", model_record(a.yamnet), folds, rows)


if __name__ == "__main__":
    main()
