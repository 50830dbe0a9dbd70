"""What a corpus holds: clips with label, speaker, sex, channel and content hash.

Two sources:
- a folder of RAVDESS-named audio files (`MM-VC-EE-II-SS-RR-AA.flac`, any depth): labels, speaker
  and sex come from the names; a `manifest.csv` beside them, if present, adds `duplicate_of` links
  and `sha256` values that the files must still match;
- a CSV manifest (`path,label,speaker` and optionally `sex`, `vocal_channel`, `sha256`,
  `duplicate_of`; `emotion` is accepted for `label`), paths relative to the CSV, so an engineer can
  train on their own recordings.

Every file is hashed (the RAVDESS copy hashes in about a second): identical audio under two names
is one recording, so only the first name (in sorted order) is used and the others are kept in the
written manifest as duplicates; they can never land on two sides of a split.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from edge.bundle import sha256_file
from edge.errors import BadAudioError, ConfigError, MissingInputError

# The model's output order for RAVDESS: the emotion codes 01..08 of the file names.
LABELS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
CHANNELS = {"01": "speech", "02": "song"}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MANIFEST_NAME = "manifest.csv"
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


@dataclass(frozen=True)
class Clip:
    path: Path  # absolute
    name: str  # the clip's id: its path relative to the corpus root, '/'-separated
    label: str
    speaker: str
    sex: str = ""  # "male", "female" or "" (unknown)
    channel: str = ""  # "speech", "song" or "" (unknown)
    sha256: str = ""
    duplicate_of: str = ""  # set when this is identical audio to the clip of that name (not used)


@dataclass(frozen=True)
class Corpus:
    root: Path
    source: str  # "ravdess-names" or "manifest"
    manifest: Path | None  # the manifest read, if any
    labels: tuple[str, ...]  # in the model's output order
    clips: tuple[Clip, ...]  # every clip found, duplicates included

    @property
    def usable(self) -> tuple[Clip, ...]:
        """One clip per recording: what splits, training and evaluation see."""
        return tuple(c for c in self.clips if not c.duplicate_of)

    def describe(self) -> dict:
        return {
            "path": str(self.root),
            "source": self.source,
            "manifest": str(self.manifest) if self.manifest else None,
            "clips": len(self.usable),
            "duplicates_dropped": len(self.clips) - len(self.usable),
        }


def parse_ravdess_name(stem: str) -> dict[str, str]:
    """Fields of a RAVDESS file name; ValueError if it is not one."""
    m = _RAVDESS_NAME.match(stem)
    if not m:
        raise ValueError(f"{stem!r} is not a RAVDESS name (MM-VC-EE-II-SS-RR-AA)")
    modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
    problems = []
    if channel not in CHANNELS:
        problems.append(f"vocal channel {channel} (01 speech, 02 song)")
    if not 1 <= int(emotion) <= len(LABELS):
        problems.append(f"emotion {emotion} (01-{len(LABELS):02d})")
    if intensity not in ("01", "02"):
        problems.append(f"intensity {intensity} (01, 02)")
    if int(actor) < 1:
        problems.append(f"actor {actor}")
    if problems:
        raise ValueError(f"{stem!r} has an invalid " + ", ".join(problems))
    return {
        "modality": modality,
        "channel": CHANNELS[channel],
        "label": LABELS[int(emotion) - 1],
        "intensity": "normal" if intensity == "01" else "strong",
        "statement": statement,
        "repetition": repetition,
        "speaker": actor,
        "sex": "male" if int(actor) % 2 else "female",
    }


def order_labels(found: set[str]) -> tuple[str, ...]:
    """RAVDESS emotions first in their code order, then any other labels sorted."""
    return tuple(label for label in LABELS if label in found) + tuple(sorted(found - set(LABELS)))


def load_corpus(data: str | Path) -> Corpus:
    data = Path(data).expanduser().resolve()
    if not data.exists():
        raise MissingInputError(
            f"{data}: no such folder or file; pass --data with a RAVDESS-named folder or a CSV manifest (path,label,speaker)"
        )
    if data.is_file():
        clips, manifest, source, root = _from_manifest(data), data, "manifest", data.parent
    else:
        root = data
        audio = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        named = [p for p in audio if _RAVDESS_NAME.match(p.stem)]
        manifest = data / MANIFEST_NAME if (data / MANIFEST_NAME).is_file() else None
        if named:
            clips, source = _from_names(data, named, manifest), "ravdess-names"
        elif manifest:
            clips, source = _from_manifest(manifest), "manifest"
        else:
            raise MissingInputError(
                f"{data}: holds no RAVDESS-named audio files (like 03-01-05-01-01-01-07.flac) and no "
                f"{MANIFEST_NAME}; name the files the RAVDESS way or pass a CSV manifest (path,label,speaker)"
            )
    clips = _mark_duplicates(clips)
    return Corpus(root, source, manifest, order_labels({c.label for c in clips}), tuple(clips))


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _from_names(root: Path, files: list[Path], manifest: Path | None) -> list[Clip]:
    extra = {row["path"]: row for row in _read_csv(manifest)} if manifest else {}
    clips = []
    for path in files:
        try:
            fields = parse_ravdess_name(path.stem)
        except ValueError as exc:
            raise BadAudioError(f"{path}: {exc}; rename or remove the file") from exc
        name = _rel(path, root)
        row = extra.get(name, {})
        clips.append(
            _hashed(
                Clip(path, name, fields["label"], fields["speaker"], fields["sex"], fields["channel"],
                     duplicate_of=(row.get("duplicate_of") or "").strip()),
                (row.get("sha256") or "").strip(),
            )
        )
    return clips


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"manifest {path}: cannot be read as CSV ({exc}); write it as UTF-8 CSV with a header") from exc


def _from_manifest(path: Path) -> list[Clip]:
    rows = _read_csv(path)
    if not rows:
        raise MissingInputError(f"manifest {path}: has no rows; list one clip per row (path,label,speaker)")
    columns = set(rows[0])
    label_col = "label" if "label" in columns else "emotion"
    missing = [c for c in ("path", label_col, "speaker") if c not in columns]
    if missing:
        raise ConfigError(
            f"manifest {path}: lacks column(s) {', '.join(missing)}; needs path,label,speaker "
            "(optional: sex, vocal_channel, sha256, duplicate_of)"
        )
    clips = []
    for line, row in enumerate(rows, start=2):
        file = (path.parent / row["path"].strip()).resolve()
        label, speaker = row[label_col].strip(), row["speaker"].strip()
        if not file.is_file():
            raise MissingInputError(f"manifest {path}, line {line}: {row['path']}: no such file; "
                                    "fix the path (relative to the manifest)")
        if not label or not speaker:
            raise ConfigError(f"manifest {path}, line {line}: empty label or speaker; fill them in or drop the row")
        sex = (row.get("sex") or "").strip().lower()
        sex = {"m": "male", "f": "female"}.get(sex, sex)
        channel = (row.get("vocal_channel") or row.get("channel") or "").strip().lower()
        clips.append(
            _hashed(
                Clip(file, _rel(file, path.parent), label, speaker, sex, channel,
                     duplicate_of=(row.get("duplicate_of") or "").strip()),
                (row.get("sha256") or "").strip(),
            )
        )
    return clips


def _hashed(clip: Clip, expected: str) -> Clip:
    actual = sha256_file(clip.path)
    if expected and expected.lower() != actual:
        raise BadAudioError(
            f"{clip.path}: its sha256 differs from the manifest's (changed or corrupt file); re-copy it or fix the manifest"
        )
    return replace(clip, sha256=actual)


def _mark_duplicates(clips: list[Clip]) -> list[Clip]:
    """Group identical audio (equal hash or a manifest `duplicate_of` link); keep the first name of each group."""
    clips = sorted(clips, key=lambda c: c.name)
    by_name = {c.name: c for c in clips}
    parent = {c.name: c.name for c in clips}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root stays the smallest name: the one kept

    first_of_hash: dict[str, str] = {}
    for c in clips:
        union(c.name, first_of_hash.setdefault(c.sha256, c.name))
        if c.duplicate_of in by_name:
            union(c.name, c.duplicate_of)
    out = []
    for c in clips:
        kept = by_name[find(c.name)]
        if kept.label != c.label:
            raise ConfigError(
                f"{c.path} and {kept.path} are the same recording with different labels "
                f"({c.label}, {kept.label}); fix the labels or drop one"
            )
        out.append(replace(c, duplicate_of="" if kept is c else kept.name))
    return out


MANIFEST_COLUMNS = ("path", "label", "speaker", "sex", "vocal_channel", "sha256", "split", "duplicate_of")


def write_manifest(f: TextIO, corpus: Corpus, split_of: dict[str, str]) -> None:
    """What a run used: every clip with its split ('' for unused duplicates); readable by load_corpus."""
    w = csv.writer(f, lineterminator="\n")
    w.writerow(MANIFEST_COLUMNS)
    for c in corpus.clips:
        w.writerow([str(c.path), c.label, c.speaker, c.sex, c.channel, c.sha256, split_of.get(c.name, ""), c.duplicate_of])
