"""Speech placed in rooms: the conditions `moodmic-train conditions` measures (trainer.conditions), defined once.

Every rendering is fixed: its random draws come from a seed made of (--seed, pool, condition family,
clip sha256), so a clip gets the same room, noise segment, level and band in every run and on every
machine, and the four SNRs of one noise kind reuse the same segment (only the gain differs). Nothing
here imports TensorFlow.

Pools: validation actors are rendered with the `validation` pool and test actors with the
`evaluation` pool; `train` is for multi-condition training. Each pool has its own noise recordings
(disjoint by source recording, trainer.noisebank) and its own rooms (drawn from the pool's seeds).

Definitions (the tests measure each):
- level: `loudest_window_dbfs`, the RMS of the loudest 2-s window (10-ms steps; the whole clip if
  shorter), in dBFS as edge.features.rms_dbfs (a full-scale sine is -3 dBFS).
- SNR: speech power over the speech's active part, i.e. the 20-ms frames within 30 dB of its loudest
  frame (`active_power`; RAVDESS's leading and trailing silence is left out), against the noise
  segment's mean power over the whole clip. The mix is scaled down as a whole only if it would clip.
- reverb: one of the pool's ROOMS_PER_POOL shoebox rooms (pyroomacoustics image-source method;
  RT60 drawn in 0.3-0.9 s and the absorption corrected until the RIR's measured T30 RT60 is within
  20 ms of it; talker 1-4 m from the microphone, both >= 0.5 m from the walls). The RIR starts
  2.5 ms before its direct path, so timing is kept; the reverberant speech gets the dry level back.
- noise-<kind>-<snr>: a segment of one of the pool's recordings of that kind at that SNR; for voices,
  1 to 3 talkers of the pool summed (trainer.noisebank). Kinds: household (and appliance), music
  (and TV-like sound), voices, fan (stationary fan / hum; corpora/ calls it fan_hum).
- far: speech through a cheap microphone: Butterworth high-pass (2nd order, 200-300 Hz) and low-pass
  (4th order, 4-6 kHz), level set to -70..-55 dBFS, white self-noise at -92..-84 dBFS, 16-bit.
- room: reverb, then other voices at 10 dB and one non-voice kind (drawn among those available) at 20 dB.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.features import rms_dbfs

from .noisebank import KINDS, NoiseBank, stable_seed

RENDER_VERSION = 1  # bump when a rendering changes: cached results are then recomputed
SNRS_DB = (20, 15, 10, 5)
ACTIVE_FRAME_S, ACTIVE_RANGE_DB = 0.02, 30.0
LEVEL_WINDOW_S, LEVEL_STEP_S = 2.0, 0.01
RT60_RANGE_S, DISTANCE_RANGE_M, WALL_MARGIN_M = (0.3, 0.9), (1.0, 4.0), 0.5
ROOM_SIZE_M = ((3.0, 8.0), (2.5, 6.0), (2.4, 3.2))
ROOMS_PER_POOL, RT60_TOLERANCE_S = 16, 0.02
FAR_LEVEL_DBFS, FAR_HIGHPASS_HZ, FAR_LOWPASS_HZ = (-70.0, -55.0), (200.0, 300.0), (4000.0, 6000.0)
FAR_SELF_NOISE_DBFS, FAR_ORDERS = (-92.0, -84.0), (2, 4)
ROOM_VOICES_SNR_DB, ROOM_NOISE_SNR_DB = 10.0, 20.0


@dataclass(frozen=True)
class Condition:
    name: str
    family: str  # clean, reverb, noise-<kind>, far, room: what seeds its draws
    kind: str = ""  # the noise kind of a noise condition
    snr_db: float = 0.0
    text: str = ""


def _conditions() -> dict[str, Condition]:
    out = [Condition("clean", "clean", text="as recorded"),
           Condition("reverb", "reverb", text=f"simulated room, RT60 {RT60_RANGE_S[0]}-{RT60_RANGE_S[1]} s, "
                                              f"talker {DISTANCE_RANGE_M[0]:g}-{DISTANCE_RANGE_M[1]:g} m away")]
    out += [Condition(f"noise-{k}-{s}", f"noise-{k}", k, float(s), f"{text} at {s} dB SNR")
            for k, text in KINDS.items() for s in SNRS_DB]
    out += [Condition("far", "far", text=f"far microphone: {FAR_LEVEL_DBFS[0]:g} to {FAR_LEVEL_DBFS[1]:g} dBFS, "
                                         f"band {FAR_HIGHPASS_HZ[0]:g}-{FAR_HIGHPASS_HZ[1]:g} Hz to "
                                         f"{FAR_LOWPASS_HZ[0] / 1000:g}-{FAR_LOWPASS_HZ[1] / 1000:g} kHz, self-noise"),
            Condition("room", "room", text=f"reverb + voices at {ROOM_VOICES_SNR_DB:g} dB + noise at {ROOM_NOISE_SNR_DB:g} dB")]
    return {c.name: c for c in out}


CONDITIONS = _conditions()


# ---- measures ----

def _frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n = len(x) // frame
    if n == 0:
        return np.array([np.mean(x ** 2)])
    return np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)


def active_power(x: np.ndarray, sr: int) -> float:
    """Mean power of the 20-ms frames within 30 dB of the loudest one (the SNR's speech side)."""
    p = _frame_power(x, int(ACTIVE_FRAME_S * sr))
    return float(p[p >= p.max() * 10 ** (-ACTIVE_RANGE_DB / 10)].mean())


def speech_span(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(start_s, end_s) from the first to the last 20-ms frame within 30 dB of the loudest one: where a
    clean clip's voice is (RAVDESS's leading and trailing silence is left out, its pauses kept)."""
    frame = int(ACTIVE_FRAME_S * sr)
    p = _frame_power(x, frame)
    on = np.flatnonzero(p >= p.max() * 10 ** (-ACTIVE_RANGE_DB / 10))
    if len(p) == 1 or len(on) == 0:  # shorter than a frame (or all zero): all of it
        return 0.0, len(x) / sr
    return float(on[0] * frame / sr), float((on[-1] + 1) * frame / sr)


def loudest_window_dbfs(x: np.ndarray, sr: int, seconds: float = LEVEL_WINDOW_S) -> float:
    """RMS level of the loudest `seconds` window (10-ms steps), dBFS; the whole clip if shorter."""
    x = np.asarray(x, np.float64)
    w = min(len(x), int(seconds * sr))
    c = np.concatenate([[0.0], np.cumsum(x ** 2)])
    starts = np.arange(0, len(x) - w + 1, max(1, int(LEVEL_STEP_S * sr)))
    return rms_dbfs(np.max(c[starts + w] - c[starts]) / w)


def band_pass(x: np.ndarray, sr: int, highpass_hz: float, lowpass_hz: float) -> np.ndarray:
    """The cheap microphone's band: causal Butterworth high-pass and low-pass (FAR_ORDERS)."""
    from scipy.signal import butter, sosfilt

    sos = np.vstack([butter(FAR_ORDERS[0], highpass_hz, "highpass", fs=sr, output="sos"),
                     butter(FAR_ORDERS[1], lowpass_hz, "lowpass", fs=sr, output="sos")])
    return sosfilt(sos, np.asarray(x, np.float64))


# ---- rooms ----

@dataclass(frozen=True)
class Room:
    pool: str
    index: int
    size_m: tuple[float, float, float]
    talker_m: tuple[float, float, float]
    mic_m: tuple[float, float, float]
    distance_m: float
    rt60_target_s: float
    rt60_s: float  # measured on the RIR (Schroeder, T30 extrapolated)
    absorption: float

    def describe(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else [round(u, 2) for u in v] if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def _draw_geometry(rng: np.random.Generator) -> tuple:
    m = WALL_MARGIN_M
    while True:
        size = tuple(float(rng.uniform(*r)) for r in ROOM_SIZE_M)
        distance = float(rng.uniform(*DISTANCE_RANGE_M))
        mic = (rng.uniform(m, size[0] - m), rng.uniform(m, size[1] - m), rng.uniform(0.7, 1.5))
        height = rng.uniform(1.1, 1.8)
        flat = np.sqrt(max(distance ** 2 - (height - mic[2]) ** 2, 0.0))
        angle = rng.uniform(0, 2 * np.pi)
        talker = (mic[0] + flat * np.cos(angle), mic[1] + flat * np.sin(angle), height)
        if all(m <= talker[i] <= size[i] - m for i in range(2)):
            return size, tuple(map(float, talker)), tuple(map(float, mic)), float(math.dist(talker, mic))


def _rir(size, talker, mic, absorption: float, max_order: int, sr: int) -> np.ndarray:
    import pyroomacoustics as pra

    room = pra.ShoeBox(list(size), fs=sr, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(list(talker))
    room.add_microphone(list(mic))
    room.compute_rir()
    return np.asarray(room.rir[0][0], np.float64)


def make_room(pool: str, index: int, seed: int, sr: int) -> tuple[Room, np.ndarray]:
    """The pool's room `index`: geometry and RT60 from the pool's seed, RIR aligned to its direct path."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(stable_seed(seed, "room", pool, index))
    rt60 = float(rng.uniform(*RT60_RANGE_S))
    while True:
        size, talker, mic = _draw_geometry(rng)[:3]
        try:
            pra.inverse_sabine(rt60, list(size))
            break
        except ValueError:  # too large a room for so short an RT60: draw another
            continue
    aim = rt60
    for _ in range(5):  # Sabine's formula misses the simulated decay by up to ~30%: correct on the measurement
        absorption, max_order = pra.inverse_sabine(aim, list(size))
        absorption = min(absorption, 0.99)
        rir = _rir(size, talker, mic, absorption, max_order, sr)
        measured = float(pra.experimental.measure_rt60(rir, fs=sr, decay_db=30))
        if abs(measured - rt60) <= RT60_TOLERANCE_S:
            break
        aim *= rt60 / measured
    start = max(0, int(np.argmax(np.abs(rir))) - int(0.0025 * sr))
    room = Room(pool, index, size, talker, mic, float(math.dist(talker, mic)), rt60, measured, float(absorption))
    return room, rir[start:].astype(np.float32)


class RoomBank:
    """Each pool's rooms, made on first use and kept in `cache` (a folder), if given."""

    def __init__(self, seed: int, sr: int, cache: Path | None = None, count: int | None = None):
        self.seed, self.sr, self.cache, self.count = seed, sr, cache, count or ROOMS_PER_POOL
        self._rooms: dict[tuple[str, int], tuple[Room, np.ndarray]] = {}

    def get(self, pool: str, index: int) -> tuple[Room, np.ndarray]:
        key = (pool, index)
        if key not in self._rooms:
            path = self.cache / f"{pool}-{index:02d}-seed{self.seed}-v{RENDER_VERSION}.npz" if self.cache else None
            if path and path.is_file():
                with np.load(path) as f:
                    info = json.loads(str(f["room"]))
                    room = Room(**{k: tuple(v) if isinstance(v, list) else v for k, v in info.items()})
                    self._rooms[key] = room, f["rir"]
            else:
                self._rooms[key] = room, rir = make_room(pool, index, self.seed, self.sr)
                if path:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp.npz")
                    np.savez(tmp, rir=rir, room=json.dumps(asdict(room)))
                    tmp.replace(path)
        return self._rooms[key]

    def all(self, pool: str) -> list[Room]:
        return [self.get(pool, i)[0] for i in range(self.count)]

    def signature(self) -> str:
        return f"rooms:{self.seed}:{self.count}"


def reverberate(x: np.ndarray, rir: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import fftconvolve

    y = fftconvolve(np.asarray(x, np.float64), rir)[: len(x)]
    return y * 10 ** ((loudest_window_dbfs(x, sr) - loudest_window_dbfs(y, sr)) / 20)


# ---- rendering ----

class Renderer:
    """render(speech, condition, pool, key): the condition applied to one clip, and what was drawn."""

    def __init__(self, noise: NoiseBank, rooms: RoomBank, seed: int, sr: int):
        self.noise, self.rooms, self.seed, self.sr = noise, rooms, seed, sr

    def missing(self, c: Condition, pool: str) -> str | None:
        """Why `c` cannot be rendered for `pool` (no real recordings of a kind it needs), or None."""
        where = f"in {self.noise.where}"
        if c.kind and not self.noise.has(c.kind, pool):
            return f"no {pool}-pool recordings of {c.kind} ({KINDS[c.kind]}) {where}"
        if c.family == "room":
            if not self.noise.has("voices", pool):
                return f"no {pool}-pool recordings of voices {where}"
            if not self._others(pool):
                return f"no {pool}-pool recordings of any non-voice kind ({', '.join(k for k in KINDS if k != 'voices')}) {where}"
        return None

    def _others(self, pool: str) -> list[str]:
        return [k for k in KINDS if k != "voices" and self.noise.has(k, pool)]

    def signature(self, c: Condition, pool: str) -> str:
        kinds = [c.kind] if c.kind else ["voices", *self._others(pool)] if c.family == "room" else []
        rooms = [self.rooms.signature()] if c.family in ("reverb", "room") else []
        return "|".join([f"v{RENDER_VERSION}", str(self.seed), c.name, pool, *rooms,
                         *(f"{k}:{self.noise.signature(k, pool)}" for k in kinds), f"synthetic:{self.noise.synthetic}"])

    def render(self, speech: np.ndarray, c: Condition, pool: str, key: str) -> tuple[np.ndarray, dict]:
        reason = self.missing(c, pool)
        if reason:
            raise ValueError(f"{c.name}: {reason}")
        rng = np.random.default_rng(stable_seed(self.seed, pool, c.family, key))
        x, info = np.asarray(speech, np.float64), {}
        if c.family in ("reverb", "room"):
            room, rir = self.rooms.get(pool, int(rng.integers(self.rooms.count)))
            x, info["room"] = reverberate(x, rir, self.sr), {"pool": pool, "index": room.index, "rt60_s": round(room.rt60_s, 3),
                                                             "distance_m": round(room.distance_m, 2)}
        if c.kind:
            x, info["noise"] = self.add_noise(x, c.kind, c.snr_db, pool, rng)
        if c.family == "room":
            x, voices = self.add_noise(x, "voices", ROOM_VOICES_SNR_DB, pool, rng)
            others = self._others(pool)
            x, other = self.add_noise(x, others[int(rng.integers(len(others)))], ROOM_NOISE_SNR_DB, pool, rng)
            info["noise"] = [voices, other]
        if c.family == "far":
            x, info["far"] = self._far(x, rng)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 0.999:  # scale the whole mix (speech and noise alike: the SNR stays)
            x = x * (0.999 / peak)
            info["scaled_db"] = round(20 * np.log10(0.999 / peak), 2)
        return x.astype(np.float32), info

    def add_noise(self, x: np.ndarray, kind: str, snr_db: float, pool: str,
                  rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """`x` plus a segment of the pool's `kind` at `snr_db` over x's active part (and what was drawn)."""
        noise, info = self.noise.segment(kind, pool, len(x), rng)
        gain = np.sqrt(active_power(x, self.sr) / max(float(np.mean(np.square(noise, dtype=np.float64))), 1e-20)
                       / 10 ** (snr_db / 10))
        return x + gain * noise, {**info, "snr_db": snr_db, "gain_db": round(float(20 * np.log10(gain)), 2)}

    def _far(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        hp, lp = float(rng.uniform(*FAR_HIGHPASS_HZ)), float(rng.uniform(*FAR_LOWPASS_HZ))
        level, self_noise = float(rng.uniform(*FAR_LEVEL_DBFS)), float(rng.uniform(*FAR_SELF_NOISE_DBFS))
        y = band_pass(x, self.sr, hp, lp)
        y *= 10 ** ((level - loudest_window_dbfs(y, self.sr)) / 20)
        y += rng.standard_normal(len(y)) * 10 ** (self_noise / 20)
        y = np.round(np.clip(y, -1, 1) * 32767) / 32767  # a 16-bit capture
        return y, {"highpass_hz": round(hp, 1), "lowpass_hz": round(lp, 1), "level_dbfs": round(level, 2),
                   "self_noise_dbfs": round(self_noise, 2)}
