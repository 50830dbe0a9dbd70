"""Augmentation of training data only: waveform copies, and window augmentation in every batch.

Waveform copies: time stretch, pitch shift, then white noise at an SNR.

Applied to the waveform before features, so augmented windows go through the device's frontend
like any other audio. Each training clip gets `copies` augmented copies whose values are drawn
from the run seed and the clip's hash: the same copy in every fold of a cross-validation, and
each one cached (cache.py) under a key naming its values.

Window augmentation (`augment_windows`), drawn afresh for every training batch from (seed, epoch,
batch), so a resumed run sees the same batches:
- frequency warp (VTLP-style, Jaitly & Hinton 2013): every band's frequency scaled by one factor per
  window drawn from 1 +- `freq_warp`, the window read off at those frequencies (linear interpolation
  between bands), as a longer or shorter vocal tract would move formants; a fresh voice every batch.
- gain: a random offset in dB on the whole window, as a waveform gain would give; bins at the
  frontend's absolute floor (digital silence, padding) stay there and every bin is re-clamped at
  the floor, so a quieter window loses detail into the floor as a quiet microphone would.
- SpecAugment-style masks (Park et al. 2019): `time_masks` runs of up to `time_mask` frames and
  `freq_masks` runs of up to `freq_mask` mel bands set to the floor (silence).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

import numpy as np

AUGMENT_VERSION = 1  # bump when apply() changes, so cached copies are recomputed


@dataclass(frozen=True)
class AugmentSettings:
    copies: int = 2  # augmented copies per training clip (0: no augmentation)
    noise: bool = True  # add white noise
    snr_db: tuple[float, float] = (15.0, 30.0)  # noise SNR range in decibels, against the clip's mean power
    pitch_semitones: float = 2.0  # pitch shift drawn from +-this many semitones (0: off)
    stretch: float = 0.1  # time-stretch rate drawn from 1 +- this (0: off)
    # window augmentation of training batches (augment_windows)
    freq_warp: float = 0.0  # frequency scale drawn from 1 +- this per window (0: off)
    freq_warp_song: bool = True  # warp song windows too (False: speech only; sung pitch is a cue)
    gain_db: float = 0.0  # random gain drawn from +-this many dB per window (0: off)
    time_masks: int = 0  # SpecAugment time masks per window
    time_mask: int = 20  # each at most this many frames
    freq_masks: int = 0  # SpecAugment frequency masks per window
    freq_mask: int = 16  # each at most this many mel bands
    # multi-condition copies (trainer.room_copies): training-pool rooms, noise and microphones
    rooms: int = 0  # room copies per training clip (0: off); needs room_noise
    room_noise: tuple[str, ...] = ()  # noise folders (corpora/ layout); only their `train` pool is used
    room_snr_db: tuple[float, float] = (0.0, 30.0)  # SNR range of a room copy's noise, dB

    @property
    def enabled(self) -> bool:
        return self.copies > 0 and (self.noise or self.pitch_semitones > 0 or self.stretch > 0)


@dataclass(frozen=True)
class Augmentation:
    """The drawn values of one augmented copy."""

    seed: int  # of the noise
    snr_db: float | None  # None: no noise
    semitones: float  # 0: no pitch shift
    rate: float  # 1: no time stretch

    def key(self) -> str:
        """Names the copy in the feature cache: every value that changes its samples."""
        snr = "none" if self.snr_db is None else f"{self.snr_db:.3f}"
        return f"a{AUGMENT_VERSION}-{_librosa_version()}-n{snr}s{self.seed}-p{self.semitones:.4f}-r{self.rate:.4f}"

    def describe(self) -> str:
        parts = []
        if self.rate != 1.0:
            parts.append(f"stretch x{self.rate:.3f}")
        if self.semitones:
            parts.append(f"pitch {self.semitones:+.2f} st")
        if self.snr_db is not None:
            parts.append(f"noise {self.snr_db:.1f} dB SNR")
        return ", ".join(parts) or "none"

    def apply(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        import librosa  # heavy (about 2 s to import): only when a copy is not cached yet

        y = np.asarray(audio, np.float32)
        if self.rate != 1.0:
            y = librosa.effects.time_stretch(y, rate=self.rate)
        if self.semitones:
            y = librosa.effects.pitch_shift(y, sr=sample_rate, n_steps=self.semitones, res_type="soxr_hq")
        if self.snr_db is not None:
            power = float(np.mean(np.square(y, dtype=np.float64)))
            noise = np.random.default_rng(self.seed).standard_normal(len(y))
            y = y + (np.sqrt(power / 10 ** (self.snr_db / 10)) * noise).astype(np.float32)
        # A device never sees samples beyond full scale.
        return np.clip(y, -1.0, 1.0).astype(np.float32)


@lru_cache(maxsize=1)
def _librosa_version() -> str:
    return "librosa" + version("librosa")


def plan_copies(settings: AugmentSettings, seed: int, clip_sha256: str) -> list[Augmentation]:
    """The augmented copies of one clip, drawn from the run seed and the clip's hash."""
    if not settings.enabled:
        return []
    rng = np.random.default_rng([seed, int(clip_sha256[:12], 16)])
    out = []
    for _ in range(settings.copies):
        snr = float(rng.uniform(*settings.snr_db)) if settings.noise else None
        semitones = float(rng.uniform(-1, 1) * settings.pitch_semitones) if settings.pitch_semitones > 0 else 0.0
        rate = float(1 + rng.uniform(-1, 1) * settings.stretch) if settings.stretch > 0 else 1.0
        out.append(Augmentation(int(rng.integers(2**31)), snr, round(semitones, 4), round(rate, 4)))
    return out


def augment_windows(x: np.ndarray, s: AugmentSettings, rng: np.random.Generator, floor_db: float,
                    band_hz: np.ndarray | None = None, song: np.ndarray | None = None) -> np.ndarray:
    """Warp, gain and masks on a batch of (N, n_frames, n_mels) dB windows (a new array; training only).

    `band_hz`: the centre frequency of each mel band (the warp needs it); `song`: which windows are
    sung (kept unwarped unless `s.freq_warp_song`)."""
    if not (s.freq_warp > 0 or s.gain_db > 0 or s.time_masks or s.freq_masks):
        return x
    out = np.array(x, np.float32, copy=True)
    n, frames, bands = out.shape
    if s.freq_warp > 0:
        if band_hz is None:
            raise ValueError("the frequency warp needs the bands' centre frequencies")
        if not s.freq_warp_song and song is None:
            raise ValueError("warping speech only needs to know which windows are sung")
        factors = rng.uniform(1 - s.freq_warp, 1 + s.freq_warp, size=n)
        if not s.freq_warp_song:
            factors[song] = 1.0  # drawn all the same, so the other augmentations see the same draws
        out = warp_bands(out, factors, band_hz)
    if s.gain_db > 0:
        silent = out <= floor_db
        out += rng.uniform(-s.gain_db, s.gain_db, size=(n, 1, 1)).astype(np.float32)
        np.maximum(out, floor_db, out=out)
        out[silent] = floor_db
    for count, width, axis, size in ((s.time_masks, s.time_mask, 1, frames), (s.freq_masks, s.freq_mask, 2, bands)):
        for _ in range(count):
            widths = rng.integers(0, width + 1, size=n)
            starts = (rng.random(n) * (size - widths + 1)).astype(int)
            idx = np.arange(size)
            mask = (idx[None, :] >= starts[:, None]) & (idx[None, :] < (starts + widths)[:, None])
            out = np.where(mask[:, :, None] if axis == 1 else mask[:, None, :], np.float32(floor_db), out)
    return out


def warp_bands(x: np.ndarray, factors: np.ndarray, band_hz: np.ndarray) -> np.ndarray:
    """(N, frames, bands) windows with window i's spectrum scaled in frequency by factors[i].

    Output band b takes the value at frequency band_hz[b] / factor (factor > 1 moves formants up);
    beyond the lowest or highest band the edge band is repeated."""
    n, _, bands = x.shape
    src = np.interp((band_hz[None, :] / factors[:, None]).ravel(), band_hz, np.arange(bands)).reshape(n, bands)
    lo = np.minimum(np.floor(src).astype(int), bands - 2)
    w = (src - lo).astype(np.float32)[:, None, :]
    rows = np.arange(n)[:, None, None]
    frames = np.arange(x.shape[1])[None, :, None]
    below, above = x[rows, frames, lo[:, None, :]], x[rows, frames, lo[:, None, :] + 1]
    return (below + (above - below) * w).astype(np.float32)  # two equal bands (e.g. the floor) stay exact

