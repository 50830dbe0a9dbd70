"""Multi-condition training: copies of each training clip placed in rooms, noise and cheap microphones.

Each training clip gets `augment.rooms` extra copies. Every copy draws its own condition from the
**training pool** only (trainer.noisebank: noise recordings disjoint by source from the validation and
evaluation pools; trainer.rooms: the pool's own simulated rooms), with the same definitions of level,
SNR and band that `moodmic-train conditions` measures (trainer.rooms), but continuous ranges:

- reverberation (probability ROOM_P): one of the training pool's rooms;
- noise (NOISE_P): a kind drawn among those the training pool has (voices included), SNR uniform in
  `augment.room_snr_db` (0-30 dB by default); and with SECOND_NOISE_P a second kind at 10-30 dB;
- microphone (MIC_P): the cheap microphone's band-pass (high-pass 100-300 Hz, low-pass 3.5-7 kHz);
- level (LEVEL_P): the loudest 2-s window set to -70..-25 dBFS plus self-noise at -92..-84 dBFS, as a
  quiet or far talker reads on a real microphone; otherwise the level is left as recorded.

A copy's draws come from (run seed, clip sha256, copy number): the same copy in every fold and run,
cached by the feature cache under a key that names the draws' seed, the noise recordings' signature
and the rendering version, so a changed noise folder recomputes the copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .noisebank import KINDS, NoiseBank, stable_seed
from .rooms import FAR_SELF_NOISE_DBFS, RENDER_VERSION, Renderer, RoomBank, band_pass, loudest_window_dbfs, reverberate

POOL = "train"
ROOM_P, NOISE_P, SECOND_NOISE_P, MIC_P, LEVEL_P = 0.5, 0.85, 0.3, 0.5, 0.5
SECOND_SNR_DB = (10.0, 30.0)
MIC_HIGHPASS_HZ, MIC_LOWPASS_HZ = (100.0, 300.0), (3500.0, 7000.0)
LEVEL_DBFS = (-70.0, -25.0)
COPIES_VERSION = 1  # bump when RoomCopy.apply changes, so cached copies are recomputed


@lru_cache(maxsize=4)
def _bank(noise_dirs: tuple[str, ...], sr: int) -> NoiseBank:
    return NoiseBank.from_dirs(list(noise_dirs), sr)


@lru_cache(maxsize=4)
def _renderer(noise_dirs: tuple[str, ...], room_seed: int, sr: int) -> Renderer:
    """The training pool's noise and rooms, mixed as `moodmic-train conditions` mixes them."""
    return Renderer(_bank(noise_dirs, sr), RoomBank(room_seed, sr), room_seed, sr)


def noise_signature(noise_dirs: tuple[str, ...], sr: int) -> str:
    bank = _bank(noise_dirs, sr)
    return stable_seed(*(bank.signature(k, POOL) for k in KINDS)).to_bytes(8, "little").hex()[:12]


@dataclass(frozen=True)
class RoomCopy:
    """One training copy in a drawn room; `apply` renders it (the feature cache calls key() and apply())."""

    seed: int  # of every draw of this copy
    noise_dirs: tuple[str, ...]
    noise_sig: str  # the training pool's recordings (noise_signature)
    snr_db: tuple[float, float]
    room_seed: int  # the training pool's rooms are drawn from this seed (the run seed)

    def key(self) -> str:
        return (f"r{COPIES_VERSION}.{RENDER_VERSION}-s{self.seed}-n{self.noise_sig}"
                f"-snr{self.snr_db[0]:g}_{self.snr_db[1]:g}-rooms{self.room_seed}")

    def describe(self) -> str:
        return f"room copy (seed {self.seed})"

    def apply(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        renderer, rng = _renderer(self.noise_dirs, self.room_seed, sample_rate), np.random.default_rng(self.seed)
        kinds = [k for k in KINDS if renderer.noise.has(k, POOL)]
        x = np.asarray(audio, np.float64)
        if rng.random() < ROOM_P:
            rooms = renderer.rooms
            x = reverberate(x, rooms.get(POOL, int(rng.integers(rooms.count)))[1], sample_rate)
        if kinds and rng.random() < NOISE_P:
            x, _ = renderer.add_noise(x, kinds[int(rng.integers(len(kinds)))], float(rng.uniform(*self.snr_db)), POOL, rng)
            if rng.random() < SECOND_NOISE_P:
                x, _ = renderer.add_noise(x, kinds[int(rng.integers(len(kinds)))], float(rng.uniform(*SECOND_SNR_DB)),
                                          POOL, rng)
        if rng.random() < MIC_P:
            x = band_pass(x, sample_rate, float(rng.uniform(*MIC_HIGHPASS_HZ)), float(rng.uniform(*MIC_LOWPASS_HZ)))
        if rng.random() < LEVEL_P:
            x = x * 10 ** ((float(rng.uniform(*LEVEL_DBFS)) - loudest_window_dbfs(x, sample_rate)) / 20)
            x = x + rng.standard_normal(len(x)) * 10 ** (float(rng.uniform(*FAR_SELF_NOISE_DBFS)) / 20)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 0.999:  # the whole mix scaled down: a device never sees samples beyond full scale
            x = x * (0.999 / peak)
        return x.astype(np.float32)


def plan_room_copies(count: int, noise_dirs: tuple[str, ...], snr_db: tuple[float, float], seed: int,
                     clip_sha256: str, sample_rate: int) -> list[RoomCopy]:
    """The room copies of one clip, drawn from the run seed and the clip's hash."""
    if count <= 0:
        return []
    sig = noise_signature(tuple(noise_dirs), sample_rate)
    return [RoomCopy(stable_seed("room-copy", seed, clip_sha256, k), tuple(noise_dirs), sig,
                     (float(snr_db[0]), float(snr_db[1])), seed) for k in range(count)]
