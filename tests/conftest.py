"""Shared test helpers: paths, the real RAVDESS folder, the tiny real bundles, synthetic audio."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


def speech_file(root: Path, path: Path, clips: int, seed: int = 0) -> Path:
    """Real RAVDESS speech of several emotions back to back, with 4 s of quiet room hiss (not a dead
    microphone's zeros) in the middle, written to `path`."""
    from edge.audio import load_audio

    chosen = [c for c in ravdess_clips(root, 60, seed=seed) if "/speech/" in str(c)][:clips]
    audio = [load_audio(c, SR) for c in chosen]
    hiss = np.random.default_rng(seed).normal(0, 3e-5, 4 * SR).astype(np.float32)
    audio.insert(len(audio) // 2, hiss)
    sf.write(path, np.concatenate(audio), SR)
    return path


def write(path: Path, audio: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    sf.write(path, audio, sr, subtype=subtype)
    return path


def wait_until(predicate: Callable[[], object], timeout: float, every: float = 0.02) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds have passed (False, after one last
    look). Tests wait on the condition they need with this, never on a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def run_moodmic(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed CLI in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=REPO,
    )


def start_moodmic(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The CLI in a fresh process that keeps running (`moodmic run ...`); text pipes for stdout/stderr."""
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def readline_within(stream, timeout: float) -> str:  # type: ignore[no-untyped-def]
    """The next line from a subprocess's pipe, or "" when none came within `timeout` seconds."""
    return stream.readline() if select.select([stream], [], [], timeout)[0] else ""


def sigterm(proc: subprocess.Popen, *, once: Callable[[], object] | None = None, within: float = 20.0,
            timeout: float = 10.0) -> tuple[float, str]:
    """SIGTERM `proc` (what systemd does on stop) and wait for it to exit: (seconds from the signal to the
    exit, its stderr). With `once`, first wait (up to `within` s) until once() is true: the process got as
    far as the test needs (its first state published, say)."""
    if once is not None:
        assert wait_until(once, within), f"not reached within {within} s before SIGTERM"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return time.monotonic() - t0, err
