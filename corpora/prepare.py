"""Turn pinned snapshots of public repositories into moodmic's corpus form: 16 kHz mono FLAC + manifest.csv.

    python -m corpora.prepare list
    python -m corpora.prepare NAME --mirror GIT_DIR_OR_FOLDER [--out DIR] [--limit N]
    python -m corpora.prepare summary [ROOT]

Two kinds of source:
- "emotion": acted or elicited emotional speech. The manifest carries RAVDESS's columns (path, corpus,
  vocal_channel, speaker, sex, emotion, ...) with `emotion` = one of moodmic's eight labels where the
  corpus's class maps onto one (else empty) and `corpus_label` = the corpus's own class; speakers are
  prefixed by the corpus ("urdu_SM1"). corpus.json records the corpus's own class list and the mapping.
- "noise": recordings to mix under speech. The manifest says which `kind` (household, music, voices,
  fan_hum) and `subkind` each file is, which `source_recording` it came from (for voices: the speaker)
  and its `pool` (train / validation / evaluation). Pools are disjoint by source recording and
  deterministic (see assign_pools): choose on validation, report on evaluation, train on train.

Audio is decoded with soundfile (WAV, FLAC, OGG/Vorbis; MP3 where libsndfile >= 1.1 has it), channels
averaged, resampled with libsoxr "VHQ" and written as 16-bit FLAC without dither or normalisation, like
../shared/data/ravdess. Outputs go outside git: by default ../corpora/NAME relative to the current
directory. The source is a git directory (bare, as the search tool's `fetch` leaves it, or a
checkout's .git) read at HEAD, or a plain folder holding the repository's files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from edge.bundle import sha256_file

TARGET_SR = 16000
# moodmic's eight labels (trainer.corpus.LABELS; a test holds the two equal).
MOODMIC_LABELS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
NOISE_KINDS: tuple[str, ...] = ("household", "music", "voices", "fan_hum")
POOLS: tuple[str, ...] = ("train", "validation", "evaluation")
POOL_SHARES = (0.6, 0.2, 0.2)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")

EMOTION_COLUMNS = ("path", "corpus", "vocal_channel", "speaker", "sex", "emotion", "corpus_label", "intensity",
                   "statement", "repetition", "language", "duration_s", "sha256", "source_repo", "source_path",
                   "source_md5", "duplicate_of", "license")
NOISE_COLUMNS = ("path", "corpus", "kind", "subkind", "source_recording", "speaker", "pool", "duration_s",
                 "sha256", "source_repo", "source_path", "source_md5", "duplicate_of", "license")

# The emotional-speech corpora that the product's independent evaluation reserves. Their names and
# file-name patterns are refused wherever they appear in a source's file list (see check_reserved).
RESERVED_PATTERNS = (
    re.compile(r"(^|[/_\-\s])tess([/_\-\s.]|$)", re.I),
    re.compile(r"toronto", re.I),
    re.compile(r"(^|/)(OAF|YAF)_[a-z]+_[a-z]+\.wav$", re.I),           # TESS file names
    re.compile(r"emo[-_ ]?db", re.I),
    re.compile(r"berlin", re.I),
    re.compile(r"(^|/)\d\d[a-b]\d\d[WLEAFTN][a-f]\.wav$"),            # EmoDB file names, e.g. 03a01Fa.wav
    re.compile(r"(^|/)03-0[12]-0\d-0[12]-0[12]-0[12]-2[1-4]\.\w+$"),   # RAVDESS actors 21-24
    re.compile(r"Actor_2[1-4]", re.I),
)


class PrepareError(RuntimeError):
    """A source that cannot be prepared as asked (missing files, reserved data, unreadable audio)."""


# ---------------------------------------------------------------------------------------------- audio

def to_mono_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Average channels, resample to 16 kHz with libsoxr VHQ; float64 in [-1, 1] in, float64 out."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != TARGET_SR:
        x = soxr.resample(x, sr, TARGET_SR, quality="VHQ")
    return x


def decode(data: bytes, name: str = "") -> tuple[np.ndarray, int]:
    """Decode a file's bytes with soundfile: (float64 samples, frames x channels or frames; sample rate)."""
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float64", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError by format
        raise PrepareError(f"cannot decode {name or 'audio'}: {exc}") from exc
    if len(audio) == 0:
        raise PrepareError(f"{name or 'audio'} holds no samples")
    return audio, int(sr)


def to_pcm16(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Round to 16 bit without dither; returns the int16 samples and how many were clipped."""
    scaled = np.round(x * 32768.0)
    clipped = int(np.count_nonzero((scaled > 32767) | (scaled < -32768)))
    return np.clip(scaled, -32768, 32767).astype(np.int16), clipped


def write_flac(path: Path, x: np.ndarray) -> int:
    """Write 16 kHz mono 16-bit FLAC; returns the number of clipped samples."""
    pcm, clipped = to_pcm16(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, TARGET_SR, format="FLAC", subtype="PCM_16")
    return clipped


# ------------------------------------------------------------------------------------------- sources

class Tree:
    """The files of one repository snapshot: a git directory read at a revision, or a plain folder."""

    def __init__(self, location: Path, rev: str = "HEAD"):
        self.location = Path(location)
        self.rev = rev
        self.git_dir = self._git_dir(self.location)
        self._cat: subprocess.Popen | None = None
        if self.git_dir is None and not self.location.is_dir():
            raise PrepareError(f"{self.location} is neither a git directory nor a folder")

    @staticmethod
    def _git_dir(location: Path) -> Path | None:
        if (location / "HEAD").is_file() and (location / "objects").is_dir():
            return location
        if (location / ".git").exists():
            return location / ".git"
        return None

    def _git(self, *args: str) -> str:
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), *args], capture_output=True, check=False)
        if out.returncode != 0:
            raise PrepareError(f"git {' '.join(args)} failed in {self.git_dir}: {out.stderr.decode(errors='replace')}")
        return out.stdout.decode()

    def commit(self) -> str:
        return self._git("rev-parse", f"{self.rev}^{{commit}}").strip() if self.git_dir else "unversioned"

    def files(self) -> dict[str, int]:
        """Every file path in the snapshot with its size in bytes (-1 where the blob is absent)."""
        if self.git_dir is None:
            return {p.relative_to(self.location).as_posix(): p.stat().st_size
                    for p in sorted(self.location.rglob("*")) if p.is_file() and ".git" not in p.parts}
        out = self._git("ls-tree", "-r", "-l", "-z", self.rev)
        files: dict[str, int] = {}
        for entry in out.split("\0"):
            if not entry:
                continue
            meta, path = entry.split("\t", 1)
            size = meta.split()[3]
            files[path] = int(size) if size.isdigit() else -1
        return files

    def read(self, path: str) -> bytes:
        if self.git_dir is None:
            return (self.location / path).read_bytes()
        if self._cat is None:
            self._cat = subprocess.Popen(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._cat.stdin and self._cat.stdout
        self._cat.stdin.write(f"{self.rev}:{path}\n".encode())
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().decode()
        if header.endswith("missing\n"):
            raise PrepareError(f"{path} is missing from the snapshot (snapshots may lack files of 4 MiB and more)")
        size = int(header.split()[2])
        data = self._cat.stdout.read(size)
        self._cat.stdout.read(1)  # the newline after the object
        return data

    def close(self) -> None:
        if self._cat is not None:
            assert self._cat.stdin
            self._cat.stdin.close()
            self._cat.wait()
            self._cat = None


def is_lfs_pointer(data: bytes) -> bool:
    return data[:100].startswith(b"version https://git-lfs.github.com/spec/")


def check_reserved(paths: Iterable[str]) -> None:
    """Refuse a snapshot that holds any reserved evaluation data (TESS, EmoDB, RAVDESS actors 21-24)."""
    hits = [p for p in paths for pat in RESERVED_PATTERNS if pat.search(p)]
    if hits:
        raise PrepareError("the snapshot holds data reserved for the product's independent evaluation "
                           f"(TESS, EmoDB or RAVDESS actors 21-24), e.g. {hits[:3]}: it must not be used")


@dataclass(frozen=True)
class Item:
    """One output file: made from one source file, or from several concatenated (`sources`)."""
    out: str                       # path of the FLAC relative to the corpus folder
    sources: tuple[str, ...]       # paths in the snapshot
    meta: dict = field(default_factory=dict)
    gap_s: float = 0.0             # silence between concatenated sources


@dataclass(frozen=True)
class Source:
    name: str
    kind: str                      # "emotion" or "noise"
    repo: str                      # GitHub owner/name
    commit: str                    # the commit this preparation was written and run against
    license: str
    description: str
    items: Callable[[dict[str, int]], list[Item]]
    classes: tuple[str, ...] = ()  # emotion: the corpus's own class list
    label_map: dict = field(default_factory=dict)  # emotion: corpus class -> moodmic label
    language: str = ""
    fixed_pools: dict = field(default_factory=dict)  # noise: source_recording -> pool, set by hand
    files: dict = field(default_factory=dict)  # noise: file stem -> [kind, subkind, source recording, license]


def _stem(path: str) -> str:
    return Path(path).stem


# URDU: siddiquelatif/URDU-Dataset. Folders Angry/Happy/Neutral/Sad; names SM1_F10_A010.wav =
# speaker SM1 (S + M/F sex + number), file 10 of that speaker, emotion letter + running number.
# Its classes and their moodmic labels are in sources.json.
_URDU_NAME = re.compile(r"^(S[MF]\d+)_F(\d+)_([AHNS])0*(\d+)\.wav$")


def urdu_items(files: dict[str, int]) -> list[Item]:
    label_map = SOURCES["urdu"].label_map
    items = []
    for path in sorted(files):
        folder, _, name = path.partition("/")
        if folder not in label_map:
            continue
        m = _URDU_NAME.match(name)
        if not m:
            raise PrepareError(f"URDU: unexpected file name {path}")
        speaker, _, letter, _ = m.groups()
        if letter != folder[0]:
            raise PrepareError(f"URDU: {path} is in {folder} but its name says {letter}")
        items.append(Item(out=f"{folder}/{_stem(name)}.flac", sources=(path,), meta={
            "vocal_channel": "speech", "speaker": f"urdu_{speaker}",
            "sex": "male" if speaker[1] == "M" else "female",
            "corpus_label": folder, "emotion": label_map[folder]}))
    return items


# Free Spoken Digit Dataset: recordings/{digit}_{speaker}_{index}.wav, 8 kHz, 50 takes per digit.
# As background voices, each speaker's takes are concatenated (in a fixed shuffled order, 0.15 s apart)
# into files of about 30 s: a person talking, rather than 3000 half-second words.
_FSDD_NAME = re.compile(r"^recordings/(\d)_([a-z]+)_(\d+)\.wav$")


def fsdd_items(files: dict[str, int], chunk_s: float = 30.0) -> list[Item]:
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for path in files:
        m = _FSDD_NAME.match(path)
        if m:
            by_speaker[m.group(2)].append(path)
    items = []
    for speaker in sorted(by_speaker):
        paths = sorted(by_speaker[speaker], key=lambda p: hashlib.sha256(p.encode()).hexdigest())
        # FSDD takes are ~0.4 s at 8 kHz, ~3.2 kB each: group by size until ~chunk_s of audio.
        chunk: list[str] = []
        seconds = 0.0
        n = 0
        for p in paths:
            chunk.append(p)
            seconds += max(files[p] - 44, 0) / (2 * 8000) + 0.15
            if seconds >= chunk_s:
                items.append(_fsdd_item(speaker, n, chunk))
                chunk, seconds, n = [], 0.0, n + 1
        if chunk:
            items.append(_fsdd_item(speaker, n, chunk))
    return items


def _fsdd_item(speaker: str, n: int, chunk: list[str]) -> Item:
    return Item(out=f"voices/{speaker}_{n:02d}.flac", sources=tuple(chunk), gap_s=0.15, meta={
        "kind": "voices", "subkind": "spoken_digits", "source_recording": f"fsdd_{speaker}",
        "speaker": f"fsdd_{speaker}"})


# librosa/data: the example recordings librosa downloads, each with a .txt naming its author and license.
# Each file's kind, subkind, source recording (or speaker) and license: sources.json, "files".


def librosa_items(files: dict[str, int]) -> list[Item]:
    items = []
    for stem, (kind, subkind, group, lic) in SOURCES["librosa_data"].files.items():
        # the .hq.ogg (44.1 kHz) where the snapshot has it, else the 22 kHz .ogg
        for candidate in (f"audio/{stem}.hq.ogg", f"audio/{stem}.ogg"):
            if files.get(candidate, -1) > 1000:
                break
        else:
            raise PrepareError(f"librosa_data: neither audio/{stem}.hq.ogg nor .ogg is in the snapshot")
        items.append(Item(out=f"{kind}/{group}.flac", sources=(candidate,), meta={
            "kind": kind, "subkind": subkind, "source_recording": group,
            "speaker": group if kind == "voices" else "", "license": lic}))
    return items


# Timgrau/Projektarbeit-1: household recordings, noise_data/resampled/{type}_{n}.wav at 16 kHz
# (the raw 44.1 kHz files are over the snapshot's 4 MiB limit; processed/ holds 5-s slices of these).
TIMGRAU_KIND = {"aircon": ("fan_hum", "air_conditioner"), "dishwasher": ("household", "dishwasher"),
                "vacuuming": ("household", "vacuum_cleaner"), "street": ("household", "street_through_window")}
_TIMGRAU_NAME = re.compile(r"^noise_data/resampled/([a-z]+)_(\d+)\.wav$")


def timgrau_items(files: dict[str, int]) -> list[Item]:
    items = []
    for path in sorted(files):
        m = _TIMGRAU_NAME.match(path)
        if not m:
            continue
        kind, subkind = TIMGRAU_KIND[m.group(1)]
        rec = f"{m.group(1)}_{m.group(2)}"
        items.append(Item(out=f"{kind}/{rec}.flac", sources=(path,), meta={
            "kind": kind, "subkind": subkind, "source_recording": rec, "speaker": ""}))
    return items


# LCAV/pyroomacoustics: test recordings in its examples: two Speech Commands background noises
# (CC BY 4.0) and CMU ARCTIC sentences of speakers aew and axb (CMU ARCTIC's free license).
PRA_FILES = {
    "examples/input_samples/doing_the_dishes.wav": ("household", "doing_the_dishes", "doing_the_dishes", "",
                                                    "CC BY 4.0 (Speech Commands)"),
    "notebooks/exercise_bike.wav": ("fan_hum", "exercise_bike", "exercise_bike", "", "CC BY 4.0 (Speech Commands)"),
}
_PRA_ARCTIC = re.compile(r"^examples/input_samples/cmu_arctic_us_(aew|axb)_(a\d{4})\.wav$")


def pyroomacoustics_items(files: dict[str, int]) -> list[Item]:
    items = []
    for path, (kind, subkind, group, speaker, lic) in PRA_FILES.items():
        if path not in files:
            raise PrepareError(f"pyroomacoustics: {path} is not in the snapshot")
        items.append(Item(out=f"{kind}/{group}.flac", sources=(path,), meta={
            "kind": kind, "subkind": subkind, "source_recording": group, "speaker": speaker, "license": lic}))
    arctic: dict[str, list[str]] = defaultdict(list)
    for path in sorted(files):
        m = _PRA_ARCTIC.match(path)
        if m:
            arctic[m.group(1)].append(path)
    for speaker, paths in sorted(arctic.items()):
        # one file per speaker: the sentences read back to back, 0.3 s apart
        items.append(Item(out=f"voices/cmu_arctic_{speaker}.flac", sources=tuple(paths), gap_s=0.3, meta={
            "kind": "voices", "subkind": "read_sentences", "source_recording": f"cmu_arctic_{speaker}",
            "speaker": f"cmu_arctic_{speaker}", "license": "CMU ARCTIC license (free use, attribution)"}))
    return items


# Sources whose every usable file is named in sources.json ("files": snapshot path -> [kind, subkind,
# source recording, license]): one output file per listed path, {kind}/{recording}.flac. A listed path
# missing from the snapshot (or absent: over the snapshot's 4 MiB limit) is an error, not skipped.
# Used by speech_commands_noise (chaeyoung-lee/wids_tutorial) and max_audio_samples (IBM/MAX-Audio-Classifier).
def _listed_items(name: str, files: dict[str, int]) -> list[Item]:
    items = []
    for path, (kind, subkind, group, lic) in SOURCES[name].files.items():
        if files.get(path, -1) <= 0:
            raise PrepareError(f"{name}: {path} is not in the snapshot (or its blob is absent)")
        items.append(Item(out=f"{kind}/{group}.flac", sources=(path,), meta={
            "kind": kind, "subkind": subkind, "source_recording": group,
            "speaker": group if kind == "voices" else "", "license": lic}))
    return items


def speech_commands_items(files: dict[str, int]) -> list[Item]:
    return _listed_items("speech_commands_noise", files)


def max_audio_items(files: dict[str, int]) -> list[Item]:
    return _listed_items("max_audio_samples", files)


# rendered_music: a folder written by corpora/render_music.py (music21's public-domain scores played by
# FluidSynth); every top-level WAV is one piece, named {score's folder}_{score}. Its subkind is the name's part
# before the first "_": the collection (bach, joplin, ...) for most scores, the work's folder for scores kept in
# one (opus18no4, k458); rendered.json has each piece's collection.
def rendered_music_items(files: dict[str, int]) -> list[Item]:
    lic = SOURCES["rendered_music"].license
    return [Item(out=f"music/{_stem(path)}.flac", sources=(path,), meta={
        "kind": "music", "subkind": f"rendered_{_stem(path).split('_')[0]}", "source_recording": _stem(path),
        "speaker": "", "license": lic})
        for path in sorted(files) if "/" not in path and path.endswith(".wav") and files[path] > 0]


# Each source's facts (repository, commit, license, class map, hand-placed pools) are data: sources.json.
# Here only the code that lists a snapshot's items.
ITEM_LISTERS: dict[str, Callable[[dict[str, int]], list[Item]]] = {
    f.__name__: f for f in (urdu_items, fsdd_items, librosa_items, timgrau_items, pyroomacoustics_items,
                            speech_commands_items, max_audio_items, rendered_music_items)}


SOURCES_FILE = Path(__file__).with_name("sources.json")


def _load_sources(path: Path = SOURCES_FILE) -> dict[str, Source]:
    sources = {}
    for entry in json.loads(path.read_text(encoding="utf-8")):
        entry = dict(entry, items=ITEM_LISTERS[entry["items"]])
        entry["classes"] = tuple(entry.get("classes", ()))
        sources[entry["name"]] = Source(**entry)
    return sources


SOURCES: dict[str, Source] = _load_sources()


# --------------------------------------------------------------------------------------------- pools

def _rank_key(source: str, group: str) -> str:
    return hashlib.sha256(f"moodmic-pool|{source}|{group}".encode()).hexdigest()


def assign_pools(source: str, groups_by_kind: dict[str, dict[str, str] | Iterable[str]],
                 fixed: dict[str, str] | None = None) -> dict[str, str]:
    """Pool (train/validation/evaluation) of every source recording, disjoint by recording.

    `groups_by_kind` maps each noise kind to its recordings (a {recording: subkind} dict, or just names).
    Within one source and one kind, the recordings of each subkind are ordered by
    sha256("moodmic-pool|source|recording"), the subkinds are interleaved (so that e.g. both dishwashers
    and vacuum cleaners reach every pool), and the first ~20 % go to evaluation, the next ~20 % to
    validation, the rest to train; with 3 or more recordings each pool gets at least one. With 1 or 2
    recordings of a kind, the hash alone decides (first 60 % of hash space train, then validation, then
    evaluation), unless `fixed` names the pool. The result depends only on the source name and its
    recordings' names and subkinds: rerunning gives the same pools."""
    fixed = fixed or {}
    pools: dict[str, str] = {}
    for kind in sorted(groups_by_kind):
        entries = groups_by_kind[kind]
        subkind_of = dict(entries) if isinstance(entries, dict) else {g: "" for g in entries}
        for g in subkind_of:
            if g in fixed:
                if fixed[g] not in POOLS:
                    raise PrepareError(f"unknown pool {fixed[g]!r} for {g}")
                pools[g] = fixed[g]
        by_sub: dict[str, list[str]] = defaultdict(list)
        for g in sorted(subkind_of):
            if g not in fixed:
                by_sub[subkind_of[g]].append(g)
        queues = [sorted(gs, key=lambda g: _rank_key(source, g))
                  for _, gs in sorted(by_sub.items(), key=lambda kv: _rank_key(source, "subkind|" + kv[0]))]
        ordered = [q[i] for i in range(max((len(q) for q in queues), default=0)) for q in queues if i < len(q)]
        n = len(ordered)
        if n >= 3:
            n_eval = max(1, round(n * POOL_SHARES[2]))
            n_val = max(1, round(n * POOL_SHARES[1]))
            for i, g in enumerate(ordered):
                pools[g] = "evaluation" if i < n_eval else "validation" if i < n_eval + n_val else "train"
        else:
            for g in ordered:
                u = int(_rank_key(source, g)[:8], 16) / 0x1_0000_0000
                pools[g] = ("train" if u < POOL_SHARES[0] else
                            "validation" if u < POOL_SHARES[0] + POOL_SHARES[1] else "evaluation")
    return pools


# ------------------------------------------------------------------------------------------- prepare

def default_out(name: str) -> Path:
    return (Path.cwd() / ".." / "corpora" / name).resolve()


def prepare(source: Source, location: Path, out: Path, limit: int | None = None,
            log: Callable[[str], None] = print) -> dict:
    """Convert `source` from the snapshot at `location` into `out`; returns the summary written to corpus.json."""
    tree = Tree(location)
    try:
        commit = tree.commit()
        if source.commit and commit not in ("unversioned", source.commit):
            log(f"note: {location} is at {commit}, this preparation was written for {source.commit}")
        files = tree.files()
        check_reserved(files)
        items = source.items(files)
        if limit is not None:
            items = items[:limit]
        if not items:
            raise PrepareError(f"{source.name}: no usable audio found in {location}")
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        seen_md5: dict[str, str] = {}
        clipped_total = 0
        for n, item in enumerate(items, 1):
            pieces = []
            md5s = []
            for src in item.sources:
                data = tree.read(src)
                if is_lfs_pointer(data):
                    raise PrepareError(f"{src} is a Git LFS pointer, not audio")
                md5s.append(hashlib.md5(data).hexdigest())
                audio, sr = decode(data, src)
                pieces.append(to_mono_16k(audio, sr))
            if len(pieces) == 1:
                x = pieces[0]
                source_md5 = md5s[0]
            else:
                gap = np.zeros(int(round(item.gap_s * TARGET_SR)))
                x = np.concatenate([p for piece in pieces for p in (piece, gap)][:-1])
                source_md5 = hashlib.md5(" ".join(md5s).encode()).hexdigest()
            dest = out / item.out
            clipped = write_flac(dest, x)
            clipped_total += clipped
            row = {
                "path": item.out, "corpus": source.name, "duration_s": f"{len(x) / TARGET_SR:.4f}",
                "sha256": sha256_file(dest), "source_repo": f"{source.repo}@{commit}",
                "source_path": " ".join(item.sources), "source_md5": source_md5,
                "duplicate_of": seen_md5.get(source_md5, ""), "license": source.license,
            }
            seen_md5.setdefault(source_md5, item.out)
            row.update(item.meta)
            rows.append(row)
            if n % 200 == 0:
                log(f"{source.name}: {n}/{len(items)}")
    finally:
        tree.close()

    if source.kind == "noise":
        groups: dict[str, dict[str, str]] = defaultdict(dict)
        for r in rows:
            groups[r["kind"]][r["source_recording"]] = r["subkind"]
        pools = assign_pools(source.name, groups, source.fixed_pools)
        for r in rows:
            r["pool"] = pools[r["source_recording"]]
        columns = NOISE_COLUMNS
    else:
        for r in rows:
            r.setdefault("language", source.language)
        columns = EMOTION_COLUMNS
    write_manifest(out / "manifest.csv", rows, columns)
    summary = {
        "name": source.name, "kind": source.kind, "repo": source.repo, "commit": commit,
        "license": source.license, "description": source.description,
        "format": "FLAC, 16 kHz, mono, 16-bit; channels averaged, soxr VHQ, no dither, not normalised or trimmed",
        "files": len(rows), "hours": round(sum(float(r["duration_s"]) for r in rows) / 3600, 4),
        "clipped_samples": clipped_total, "counts": count_rows(rows, source.kind),
    }
    if source.kind == "emotion":
        summary["classes"] = list(source.classes)
        summary["label_map"] = {c: source.label_map.get(c, "") for c in source.classes}
        summary["language"] = source.language
    (out / "corpus.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def write_manifest(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="raise", lineterminator="\n")
        w.writeheader()
        for r in sorted(rows, key=lambda r: r["path"]):
            w.writerow({c: r.get(c, "") for c in columns})


def count_rows(rows: Iterable[dict], kind: str) -> dict:
    """Clips and seconds by label (emotion) or by kind and pool (noise)."""
    counts: dict[str, dict[str, float]] = defaultdict(lambda: {"clips": 0, "seconds": 0.0})
    for r in rows:
        keys = ([f"emotion={r.get('emotion') or '-'}", f"corpus_label={r['corpus_label']}"] if kind == "emotion"
                else [f"kind={r['kind']}", f"pool={r['pool']}", f"{r['kind']}/{r['pool']}"])
        for k in keys:
            counts[k]["clips"] += 1
            counts[k]["seconds"] = round(counts[k]["seconds"] + float(r["duration_s"]), 3)
    return dict(sorted(counts.items()))


def read_manifest(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------- cli

def cmd_list(_: argparse.Namespace) -> int:
    for s in SOURCES.values():
        print(f"{s.name:24} {s.kind:8} fetch github:{s.repo}  (commit {s.commit[:12]})")
        print(f"{'':24} {s.description}")
        print(f"{'':24} license: {s.license}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else default_out("")
    for manifest in sorted(root.glob("*/manifest.csv")):
        rows = read_manifest(manifest)
        kind = "noise" if "pool" in rows[0] else "emotion"
        total = sum(float(r["duration_s"]) for r in rows)
        print(f"{manifest.parent.name}: {len(rows)} files, {total / 3600:.3f} h ({kind})")
        for key, c in count_rows(rows, kind).items():
            print(f"  {key:40} {c['clips']:5d} clips {c['seconds'] / 60:8.2f} min")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["list"]:
        return cmd_list(argparse.Namespace())
    if argv[:1] == ["summary"]:
        p = argparse.ArgumentParser(prog="python -m corpora.prepare summary")
        p.add_argument("root", nargs="?", help="folder of prepared corpora (default ../corpora)")
        return cmd_summary(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(prog="python -m corpora.prepare", description=__doc__.split("\n\n")[0],
                                epilog="Subcommands: `list` (the known sources), `summary [ROOT]` (counts).")
    p.add_argument("name", choices=sorted(SOURCES), help="which source (see `list`)")
    p.add_argument("--mirror", required=True, type=Path,
                   help="the snapshot: a git directory (bare or .git) read at HEAD, or a folder of its files")
    p.add_argument("--out", type=Path, help="output folder (default ../corpora/NAME from the current directory)")
    p.add_argument("--limit", type=int, help="convert only the first N output files (a quick check)")
    args = p.parse_args(argv)
    out = args.out or default_out(args.name)
    try:
        summary = prepare(SOURCES[args.name], args.mirror, out, args.limit)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary['name']}: {summary['files']} files, {summary['hours']:.3f} h -> {out}")
    for key, c in summary["counts"].items():
        print(f"  {key:40} {c['clips']:5d} clips {c['seconds'] / 60:8.2f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
