"""On-disk cache of clip features, outside git (default ~/.cache/moodmic/features, or --cache DIR).

An entry is every log-mel frame of one clip (or of one augmented copy), as a float32 .npy file
named by the file's sha256 (+ the augmentation's key), in a folder named by the frontend: its
feature version, its parameters and a fingerprint of its output on a fixed signal. So a change to
the parameters or to the frontend's code gives a new folder instead of stale features, and a
renamed or moved file is still found.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edge.audio import load_audio
from edge.features import Frontend, clip_frames

from .augment import Augmentation
from .corpus import Clip
from .room_copies import RoomCopy


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moodmic" / "features"


def frontend_key(frontend: Frontend) -> str:
    """Feature version + parameters + the frontend's output on a fixed signal."""
    p = frontend.params
    t = np.arange(p.window_samples) / p.sample_rate
    probe = (0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t)))
    digest = hashlib.sha256(json.dumps(p.to_dict(), sort_keys=True).encode())
    digest.update(frontend.frames(probe.astype(np.float32))[0].tobytes())
    return f"v{p.feature_version}-{digest.hexdigest()[:16]}"


class FeatureCache:
    def __init__(self, root: str | Path, frontend: Frontend):
        self.frontend = frontend
        self.dir = Path(root).expanduser() / frontend_key(frontend)
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "features.json"
        if not info.exists():
            info.write_text(json.dumps(frontend.params.to_dict(), indent=2) + "\n", encoding="utf-8")

    def path(self, clip: Clip, aug: Augmentation | RoomCopy | None = None) -> Path:
        key = clip.sha256 if aug is None else f"{clip.sha256}-{aug.key()}"
        return self.dir / key[:2] / f"{key}.npy"

    def frames(self, clip: Clip, aug: Augmentation | RoomCopy | None = None) -> np.ndarray:
        path = self.path(clip, aug)
        if path.exists():
            try:
                return np.load(path)
            except (OSError, ValueError):
                pass  # a torn or foreign file: recompute it
        rate = self.frontend.params.sample_rate
        audio = load_audio(clip.path, rate)
        if aug is not None:
            audio = aug.apply(audio, rate)
        frames = clip_frames(self.frontend, audio)[0]  # any n_frames consecutive rows are a device window
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, frames)
        os.replace(tmp, path)  # never a half-written entry under the real name
        return frames
