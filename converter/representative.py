"""The representative set: real windows from the training side, so int8 ranges fit real speech.

Windows come from edge.features exactly as the device computes them. Per class an equal share,
spread evenly over the loudness range (quietest to loudest window of that class), so quiet and
loud speech both set the ranges; one all-silence window pins the floor, the input's minimum.
Never validation or test audio: the split is the trainer's (run.json).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from edge.audio import load_audio
from edge.errors import MissingInputError, MoodmicError
from edge.features import Frontend, file_windows, stack

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def windows_by_label(clips: list[tuple[Path, str]], frontend: Frontend, hop_frames: int) -> dict[str, list]:
    """Every device window of each (path, label) clip, grouped by label; unusable files are skipped."""
    out: dict[str, list] = defaultdict(list)
    for path, label in clips:
        try:
            out[label] += file_windows(frontend, load_audio(path, frontend.params.sample_rate), hop_frames)
        except MoodmicError:
            continue
    return dict(out)


def select(by_label: dict[str, list], frontend: Frontend, size: int, seed: int) -> np.ndarray:
    """`size` windows: an equal share per label, one at random from each slice of the label's
    loudness range, with the quietest and the loudest window always in."""
    rng = np.random.default_rng(seed)
    per_label = max(2, (size - 1) // max(1, len(by_label)))
    chosen = []
    for label in sorted(by_label):
        windows = sorted(by_label[label], key=lambda w: w.rms_dbfs)
        slices = np.array_split(np.arange(len(windows)), min(per_label, len(windows)))
        at = [int(rng.choice(s)) for s in slices]
        at[0], at[-1] = 0, len(windows) - 1
        chosen += [windows[i] for i in sorted(set(at))]
    p = frontend.params
    silence = np.full((1, p.n_frames, p.n_mels), p.floor_db, np.float32)
    return np.concatenate([silence, stack(chosen)])


def from_folder(folder: Path, frontend: Frontend, hop_frames: int, size: int, seed: int) -> np.ndarray:
    """Override: windows from every audio file under a folder (unlabelled), spread by loudness."""
    files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise MissingInputError(f"representative folder {folder}: holds no .wav/.flac/.ogg files; point --rep-dir at audio")
    by_label = windows_by_label([(f, "all") for f in files], frontend, hop_frames)
    if not by_label:
        raise MissingInputError(f"representative folder {folder}: none of its {len(files)} files is usable audio")
    return select(by_label, frontend, size, seed)
