"""Multi-condition training copies (trainer.room_copies): seeded, training pool only, cached by what they draw."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from trainer.noisebank import KINDS
from trainer.room_copies import POOL, RoomCopy, plan_room_copies

from conftest import SR, speechlike

POOL_TONES_HZ = {"train": 500.0, "validation": 3000.0, "evaluation": 5000.0}  # each pool's noise is one tone


def tone_noise(root: Path) -> tuple[str, ...]:
    """A noise folder whose recordings of every kind are a pure tone per pool, so a rendering shows which
    pool it drew from."""
    rows = []
    t = np.arange(4 * SR) / SR
    for kind in KINDS:
        for pool, hz in POOL_TONES_HZ.items():
            name = f"{kind}/{pool}.flac"
            (root / kind).mkdir(parents=True, exist_ok=True)
            sf.write(root / name, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), SR)
            rows.append([name, "test", kind, "tone", f"{kind}-{pool}", pool])
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "corpus", "kind", "subkind", "source_recording", "pool"], *rows])
    return (str(root),)


def band_energy(x: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spectrum[np.abs(freqs - hz) < 30].sum() / spectrum.sum())


def test_copies_are_seeded_per_clip_and_copy_and_keyed_by_their_noise(tmp_path):
    noise = tone_noise(tmp_path / "noise")
    a = plan_room_copies(3, noise, (0.0, 30.0), seed=0, clip_sha256="ab" * 32, sample_rate=SR)
    assert a == plan_room_copies(3, noise, (0.0, 30.0), seed=0, clip_sha256="ab" * 32, sample_rate=SR)
    assert len({c.key() for c in a}) == 3  # each copy its own cache entry
    other_clip = plan_room_copies(3, noise, (0.0, 30.0), seed=0, clip_sha256="cd" * 32, sample_rate=SR)
    assert not {c.key() for c in a} & {c.key() for c in other_clip}
    assert plan_room_copies(0, noise, (0.0, 30.0), seed=0, clip_sha256="ab" * 32, sample_rate=SR) == []
    x = speechlike(3.0, seed=1)
    assert np.array_equal(a[0].apply(x, SR), a[0].apply(x, SR))
    # another recording in the training pool is another signature, so cached copies are recomputed
    (tmp_path / "noise" / "voices" / "more.flac").write_bytes((tmp_path / "noise" / "voices" / "train.flac").read_bytes())
    with open(tmp_path / "noise" / "manifest.csv", "a", newline="") as f:
        csv.writer(f).writerow(["voices/more.flac", "test", "voices", "tone", "voices-more", "train"])
    from trainer.room_copies import _bank

    _bank.cache_clear()
    changed = plan_room_copies(1, noise, (0.0, 30.0), seed=0, clip_sha256="ab" * 32, sample_rate=SR)
    assert changed[0].key() != a[0].key()


def test_copies_draw_noise_from_the_training_pool_only(tmp_path):
    noise = tone_noise(tmp_path / "noise")
    x = speechlike(3.0, seed=2, level=0.05)
    noisy = 0
    for k in range(40):
        y = RoomCopy(k, noise, plan_room_copies(1, noise, (0.0, 10.0), 0, "ef" * 32, SR)[0].noise_sig, (0.0, 10.0), 0)
        out = y.apply(x, SR)
        assert out.dtype == np.float32 and len(out) == len(x) and np.max(np.abs(out)) <= 0.999 + 1e-6
        for pool, hz in POOL_TONES_HZ.items():
            if pool != POOL:
                assert band_energy(out, hz) < 1e-3, (k, pool)
        noisy += band_energy(out, POOL_TONES_HZ[POOL]) > 0.05
    assert 20 <= noisy <= 40  # most copies carry noise (NOISE_P), always the training pool's


def test_rooms_without_room_noise_is_refused_before_any_training(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "trainer.cli", "cv", "--rooms", "2", "--data", str(tmp_path),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("see corpora/README.md)")
    assert "--room-noise" in proc.stderr and not (tmp_path / "run").exists()
