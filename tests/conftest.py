"""Shared test helpers: paths, the real RAVDESS folder, the tiny real bundles, synthetic audio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.data_path import data_dir

REPO = Path(__file__).resolve().parents[1]
RAVDESS = data_dir(REPO)
FIXTURES = REPO / "tests" / "fixtures"
TINY_INT8 = FIXTURES / "tiny_int8"
TINY_FLOAT = FIXTURES / "tiny_float"
SR = 16000


@pytest.fixture(scope="session")
def ravdess() -> Path:
    if not (RAVDESS / "manifest.csv").is_file():
        pytest.skip(f"real RAVDESS data not found at {RAVDESS}")
    return RAVDESS


def ravdess_clips(root: Path, n: int, seed: int = 0) -> list[Path]:
    """n clips spread over actors, emotions, speech and song (deterministic)."""
    import csv

    rows = list(csv.DictReader(open(root / "manifest.csv")))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=n, replace=False)
    return [root / rows[i]["path"] for i in sorted(picked)]


def speechlike(seconds: float = 3.0, sr: int = SR, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """Varied audio: a gliding harmonic tone with syllable-like bursts and some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t) + 40 * t
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    x = voiced * envelope + 0.05 * rng.standard_normal(len(t))
    return (level * x / np.max(np.abs(x))).astype(np.float32)


def write(path: Path, audio: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    sf.write(path, audio, sr, subtype=subtype)
    return path


def run_moodmic(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed CLI in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=REPO,
    )
