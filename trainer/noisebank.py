"""Noise recordings for the room conditions (trainer.rooms), by kind and by pool.

A noise folder is a CSV manifest, or a folder holding `manifest.csv` files one or two levels down (as
corpora/prepare.py writes them), with one row per recording: `path` (relative to the manifest),
`kind` (household, music, voices, fan_hum; the aliases in KIND_ALIASES are accepted), `pool`
(train, validation, evaluation) and `source_recording` (or `source`: the recording a file was cut
from, for voices the talker; the file's path if absent). Pools must be disjoint by source: a source
in two pools is refused, since a validation figure measured on noise that also trains would not be
held out. Manifests without `kind` and `pool` columns (speech corpora) are passed over; rows with
an empty kind or a `duplicate_of` are skipped; unknown kinds are counted and reported.

A segment of a kind is one recording, looped if shorter than the speech, at a random offset (drawn
again if it is digital silence); "other voices" are 1 to 3 talkers of the pool (distinct sources)
at equal power, summed: anything from one person talking to babble.

`NoiseBank.synthetic_bank(seed, sr)` makes seeded stand-ins instead (pink noise + mains hum for fan, clatter
bursts for household, chords for music, harmonic syllable-rate babble for voices), six 20-s
"recordings" per kind and pool, each pool from its own seeds. They exist for tests and dry runs;
every result measured with them says `synthetic`, and they never fill in for a missing real kind.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from edge.audio import load_audio
from edge.errors import ConfigError, MissingInputError

KINDS: dict[str, str] = {
    "household": "household and appliance noise",
    "music": "music and TV-like sound",
    "voices": "other voices (babble, talkers)",
    "fan": "stationary fan / hum",
}
KIND_ALIASES = {
    "household": "household", "appliance": "household", "appliances": "household", "domestic": "household",
    "music": "music", "tv": "music", "music/tv": "music", "television": "music",
    "voices": "voices", "voice": "voices", "babble": "voices", "talkers": "voices", "speech": "voices",
    "fan": "fan", "hum": "fan", "fan_hum": "fan", "fan/hum": "fan", "stationary": "fan",
}
POOLS = ("train", "validation", "evaluation")
POOL_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                "valid": "validation", "dev": "validation", "evaluation": "evaluation", "eval": "evaluation",
                "test": "evaluation"}
_KIND_COLUMNS, _POOL_COLUMNS = ("kind", "noise_kind", "category"), ("pool", "noise_pool")
_SOURCE_COLUMNS = ("source_recording", "source", "recording", "source_id")
SILENT_POWER = 1e-9  # a segment below -90 dBFS is redrawn (digital silence in a recording)
SYNTHETIC_RECORDINGS, SYNTHETIC_SECONDS = 6, 20.0
VOICES_TALKERS = 3  # other voices: 1 to 3 talkers of the pool at once


def stable_seed(*parts: object) -> int:
    """A seed from any values, the same on every machine and run (unlike hash())."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


@dataclass(frozen=True)
class Recording:
    kind: str
    pool: str
    source: str
    name: str  # the manifest's path (or "synthetic:<kind>:<pool>:<i>")
    path: Path | None  # None: synthetic
    frames: int
    rate: int


class NoiseBank:
    def __init__(self, recordings: list[Recording], sr: int, where: str, synthetic: bool = False,
                 ignored: dict[str, int] | None = None, seed: int = 0):
        self.recordings, self.sr, self.where, self.synthetic = recordings, sr, where, synthetic
        self.ignored, self.seed = ignored or {}, seed
        self._audio: dict[str, np.ndarray] = {}
        pools: dict[str, set[str]] = {}
        for r in recordings:
            pools.setdefault(r.source, set()).add(r.pool)
        leaky = sorted(s for s, p in pools.items() if len(p) > 1)
        if leaky:
            raise ConfigError(f"noise source(s) in more than one pool: {', '.join(leaky[:5])}; "
                              "assign each source recording to one pool only")

    @classmethod
    def from_dirs(cls, dirs: list[str | Path], sr: int) -> NoiseBank:
        recordings, ignored = [], {}
        for d in dirs:
            for manifest in _manifests(Path(d)):
                recordings += _read_manifest(manifest, ignored)
        return cls(recordings, sr, ", ".join(map(str, dirs)) or "(no --noise given)", ignored=ignored)

    @classmethod
    def synthetic_bank(cls, seed: int, sr: int) -> NoiseBank:
        n = int(SYNTHETIC_SECONDS * sr)
        recs = [Recording(k, p, f"synthetic:{k}:{p}:{i}", f"synthetic:{k}:{p}:{i}", None, n, sr)
                for k in KINDS for p in POOLS for i in range(SYNTHETIC_RECORDINGS)]
        return cls(recs, sr, "synthetic stand-ins (--synthetic-noise)", synthetic=True, seed=seed)

    def of(self, kind: str, pool: str) -> list[Recording]:
        return [r for r in self.recordings if r.kind == kind and r.pool == pool]

    def has(self, kind: str, pool: str) -> bool:
        return any(r.kind == kind and r.pool == pool for r in self.recordings)

    def signature(self, kind: str, pool: str) -> str:
        """Identifies the recordings a kind and pool draws from (a cached result is reused only if it is unchanged)."""
        rows = sorted(f"{r.source}|{r.name}|{r.frames}|{r.rate}" for r in self.of(kind, pool))
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]

    def describe(self) -> dict:
        table = {k: {p: {"recordings": len(rs), "sources": len({r.source for r in rs}),
                         "seconds": round(sum(r.frames / r.rate for r in rs), 1)}
                     for p in POOLS if (rs := self.of(k, p))} for k in KINDS}
        return {"where": self.where, "synthetic": self.synthetic, "kinds": table,
                **({"ignored_kinds": self.ignored} if self.ignored else {})}

    def segment(self, kind: str, pool: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """n samples of `kind` from `pool`: one recording (looped if shorter) at a random offset; for voices,
        1 to VOICES_TALKERS talkers (distinct sources) at equal power, summed."""
        recs = self.of(kind, pool)
        sources = sorted({r.source for r in recs})
        talkers = int(rng.integers(1, min(VOICES_TALKERS, len(sources)) + 1)) if kind == "voices" else 1
        picked = [sources[i] for i in sorted(rng.choice(len(sources), talkers, replace=False))] if kind == "voices" else []
        parts = [self._one([r for r in recs if r.source == s] if picked else recs, n, rng) for s in picked or [None]]
        audio = parts[0][0] if len(parts) == 1 else sum(
            a / np.sqrt(max(float(np.mean(np.square(a, dtype=np.float64))), SILENT_POWER)) for a, _, _ in parts)
        return np.asarray(audio, np.float32), {
            "kind": kind, "pool": pool, "sources": [r.source for _, r, _ in parts],
            "recordings": [r.name for _, r, _ in parts], "offsets_s": [round(o / self.sr, 3) for _, _, o in parts]}

    def _one(self, recs: list[Recording], n: int, rng: np.random.Generator) -> tuple[np.ndarray, Recording, int]:
        for _ in range(10):  # a segment of digital silence is drawn again
            rec = recs[int(rng.integers(len(recs)))]
            length = rec.frames * self.sr // rec.rate  # in samples at self.sr
            offset = int(rng.integers(length - n + 1 if length >= n else length))
            audio = self._read(rec, offset, n)
            if float(np.mean(np.square(audio, dtype=np.float64))) > SILENT_POWER:
                break
        return audio, rec, offset

    def _read(self, rec: Recording, offset: int, n: int) -> np.ndarray:
        if rec.path is not None and rec.rate == self.sr and rec.frames >= offset + n:
            data, _ = sf.read(rec.path, start=offset, stop=offset + n, dtype="float32", always_2d=True)
            return data.mean(axis=1, dtype=np.float32)
        audio = self._audio.get(rec.name)
        if audio is None:  # short, synthetic or another rate: whole, once
            audio = self._audio[rec.name] = (load_audio(rec.path, self.sr) if rec.path is not None
                                             else _synthesize(rec, self.seed, self.sr))
        return np.take(audio, (offset + np.arange(n)) % len(audio)).astype(np.float32)


def _manifests(d: Path) -> list[Path]:
    if d.is_file():
        return [d]
    if (d / "manifest.csv").is_file():
        return [d / "manifest.csv"]
    found = sorted(d.glob("*/manifest.csv")) + sorted(d.glob("*/*/manifest.csv"))
    if not d.is_dir() or not found:
        raise MissingInputError(f"--noise {d}: no manifest.csv there or in its subfolders; "
                                "give a folder prepared by corpora/ (or a CSV: path,kind,pool,source)")
    return found


def _column(row: dict, names: tuple[str, ...]) -> str:
    return next((row[c] or "" for c in names if c in row), "").strip()


def _read_manifest(path: Path, ignored: dict[str, int]) -> list[Recording]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not any(c in rows[0] for c in _KIND_COLUMNS) or not any(c in rows[0] for c in _POOL_COLUMNS):
        return []  # not a noise manifest (a speech corpus, say)
    out = []
    for line, row in enumerate(rows, start=2):
        raw_kind = _column(row, _KIND_COLUMNS).lower()
        if not raw_kind or (row.get("duplicate_of") or "").strip():
            continue
        kind = KIND_ALIASES.get(raw_kind)
        if kind is None:
            ignored[raw_kind] = ignored.get(raw_kind, 0) + 1
            continue
        pool = POOL_ALIASES.get(_column(row, _POOL_COLUMNS).lower())
        if pool is None:
            raise ConfigError(f"{path}, line {line}: pool {_column(row, _POOL_COLUMNS)!r} is not one of {', '.join(POOLS)}")
        file = (path.parent / row["path"].strip()).resolve()
        if not file.is_file():
            raise MissingInputError(f"{path}, line {line}: {row['path']}: no such file; re-run the noise preparation")
        info = sf.info(file)
        out.append(Recording(kind, pool, _column(row, _SOURCE_COLUMNS) or row["path"].strip(), row["path"].strip(),
                             file, info.frames, info.samplerate))
    return out


# ---- synthetic stand-ins (tests and dry runs only; labelled wherever they are used) ----

def _synthesize(rec: Recording, seed: int, sr: int) -> np.ndarray:
    rng = np.random.default_rng(stable_seed(seed, "synthetic-noise", rec.source))
    x = {"fan": _fan, "household": _household, "music": _music, "voices": _babble}[rec.kind](rng, rec.frames, sr)
    return (0.1 * x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def _shaped(rng: np.random.Generator, n: int, slope: float) -> np.ndarray:
    """Gaussian noise whose power falls as f**-slope (1: pink, 2: brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    spec[1:] /= f[1:] ** (slope / 2)
    spec[0] = 0
    return np.fft.irfft(spec, n)


def _fan(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    pink = _shaped(rng, n, 1.0)
    f0 = rng.choice([50.0, 60.0])
    hum = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) for h in range(1, 5))
    return pink / pink.std() + rng.uniform(0.3, 0.8) * hum / hum.std()


def _household(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    x = 0.3 * _shaped(rng, n, 2.0)
    x /= x.std() + 1e-12
    x *= 0.2
    for start in np.sort(rng.integers(0, n, size=max(1, int(rng.poisson(1.5 * n / sr))))):
        length = min(n - start, int(rng.uniform(0.03, 0.3) * sr))
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (rng.uniform(0.005, 0.06) * sr))
        x[start:start + length] += rng.uniform(1, 4) * np.convolve(burst, np.ones(int(rng.integers(1, 6))), "same")
    return x


def _music(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    x, pos = np.zeros(n), 0
    while pos < n:
        length = min(n - pos, int(rng.uniform(0.2, 0.6) * sr))
        t = np.arange(length) / sr
        env = np.exp(-t / rng.uniform(0.2, 0.8))
        for midi in rng.integers(45, 84, size=3):
            f = 440.0 * 2 ** ((midi - 69) / 12)
            x[pos:pos + length] += env * sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 5) if k * f < sr / 2)
        pos += length
    return x


def _babble(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t, x = np.arange(n) / sr, np.zeros(n)
    for _ in range(int(rng.integers(3, 7))):
        f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        voiced = sum(np.sin(k * phase) / k for k in range(1, 11))
        syllables = np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)) > rng.uniform(-0.3, 0.3)
        env = np.convolve(syllables.astype(float), np.ones(int(0.03 * sr)) / int(0.03 * sr), "same")
        x += env * (voiced + 0.3 * rng.standard_normal(n))
    return x
