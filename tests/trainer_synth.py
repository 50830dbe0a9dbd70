"""A synthetic RAVDESS-named corpus for the trainer tests: learnable patterns, several speakers.

Each emotion is a harmonic tone at its own pitch (a ratio of 1.4, about 6 semitones, between
neighbours) with its own amplitude-modulation rate; each speaker shifts the pitch by up to +-4%
and has its own level and noise; song clips add vibrato. Clips are 2.0-3.6 s (some shorter than a
model window) with leading and trailing silence. One exact duplicate file is included, as in RAVDESS.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
EMOTIONS = 8
SONG_EMOTIONS = 6  # RAVDESS song has no disgust (07) or surprised (08)
DUPLICATE = ("speech/Actor_01/03-01-03-01-01-01-01.wav", "speech/Actor_01/03-01-03-01-02-01-01.wav")


def clip(emotion: int, actor: int, song: bool, rng: np.random.Generator) -> np.ndarray:
    seconds = rng.uniform(2.0, 3.6)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 220.0 * 1.4 ** (emotion - 1) * (1 + 0.04 * np.sin(actor * 1.7)) * rng.uniform(0.99, 1.01)
    if song:
        f0 = f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0 * np.ones_like(t)) / SR
    tone = np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
    am = 0.6 + 0.4 * np.sin(2 * np.pi * (2 + emotion) * t)
    x = tone * am + rng.uniform(0.02, 0.08) * rng.standard_normal(len(t))
    x *= (0.1 + 0.05 * (actor % 4)) * rng.uniform(0.8, 1.2) / np.max(np.abs(x))
    lead, tail = (np.zeros(int(rng.uniform(0.05, 0.3) * SR)) for _ in range(2))
    return np.concatenate([lead, x, tail]).astype(np.float32)


def make_corpus(root: Path, speakers: int = 8, reps: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for actor in range(1, speakers + 1):
        for channel, folder, emotions in (("01", "speech", EMOTIONS), ("02", "song", SONG_EMOTIONS)):
            d = root / folder / f"Actor_{actor:02d}"
            d.mkdir(parents=True, exist_ok=True)
            for emotion in range(1, emotions + 1):
                for rep in range(1, reps + 1):
                    name = f"03-{channel}-{emotion:02d}-01-01-{rep:02d}-{actor:02d}.wav"
                    sf.write(d / name, clip(emotion, actor, channel == "02", rng), SR, subtype="PCM_16")
    shutil.copyfile(root / DUPLICATE[0], root / DUPLICATE[1])
    return root


def shuffled_manifest(root: Path, out: Path, seed: int = 0) -> Path:
    """A CSV manifest of the corpus with its labels permuted across clips: nothing left to learn."""
    from trainer.corpus import load_corpus

    clips = load_corpus(root).usable  # a duplicate must keep its original's label
    labels = np.random.default_rng(seed).permutation([c.label for c in clips])
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "sex", "vocal_channel"])
        for c, label in zip(clips, labels):
            w.writerow([c.path, label, c.speaker, c.sex, c.channel])
    return out


def tiny_cvs(tmp: Path, seeds: tuple[int, ...] = (1, 2)) -> list[Path]:
    """Cross-validations (3 folds) of the `tiny` architecture on one synthetic corpus, one per init seed:
    the same folds and augmented copies (the run seed's), different weights."""
    from trainer.cli import main as train

    corpus = make_corpus(tmp / "corpus", speakers=6, reps=1)
    common = ["--data", str(corpus), "--folds", "3", "--arch", "tiny", "--epochs", "3", "--val-actors", "1",
              "--cache", str(tmp / "cache"), "--lr-patience", "1"]
    cvs = [tmp / f"cv-{s}" for s in seeds]
    for cv, seed in zip(cvs, seeds):
        assert train(["cv", *common, "--out", str(cv), "--init-seed", str(seed)]) == 0
    return cvs


def fake_run(root: Path, synth: Path) -> Path:
    """A run directory of the synthetic corpus (actor 03 validates, 04 tests) without a Keras model."""
    from trainer.corpus import load_corpus

    run = root / "run"
    run.mkdir(parents=True)
    bundle = json.loads((Path(__file__).parent / "fixtures" / "tiny_float" / "model.json").read_text())
    (run / "run.json").write_text(json.dumps({"format_version": 1, "labels": bundle["labels"], "features": bundle["features"],
                                              "eval_hop_s": 1.0, "keras_model": "model.keras", "settings": {}}))
    with open(run / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "sex", "vocal_channel", "sha256", "split", "duplicate_of"])
        for c in load_corpus(synth).clips:
            split = {"03": "val", "04": "test"}.get(c.speaker, "train") if not c.duplicate_of else ""
            w.writerow([c.path, c.label, c.speaker, c.sex, c.channel, c.sha256, split, c.duplicate_of])
    return run
