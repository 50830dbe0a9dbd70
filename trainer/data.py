"""The arrays fit() sees: random device windows of training items, fixed device windows of validation clips.

Training items are the training split's clips plus their augmented copies (the only place
augmentation happens). Each epoch takes, from every row of the epoch plan, `crops` random
n_frames-long crops of the item's frames: device windows at random offsets, so the model learns
from every part of a clip, as the device will score it (the seed's first-3-s training lost 0.09 when
scored with sliding windows). Oversampling repeats rows of minority classes in the training plan
only. Validation uses each validation clip's windows at the evaluation hop, taken by
edge.features.file_windows, each once.

`fit_items.csv` in the run directory lists every item behind these arrays (which clip, which copy,
how many rows per epoch), for the leak tests and for anyone auditing a run.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from edge.audio import load_audio
from edge.features import Frontend, file_windows, mel_edges_hz, stack

from .augment import Augmentation, AugmentSettings, augment_windows, plan_copies
from .cache import FeatureCache
from .corpus import Clip
from .progress import progress
from .room_copies import RoomCopy, plan_room_copies


@dataclass(frozen=True)
class Item:
    clip: Clip
    copy: int  # 0: the original; 1..: augmented copies
    aug: Augmentation | RoomCopy | None = None


@dataclass
class TrainingData:
    labels: tuple[str, ...]
    n_frames: int
    items: list[Item]  # training items: originals and augmented copies
    frames: list[np.ndarray]  # (T, n_mels) per item
    y: np.ndarray  # label index per item
    rows: np.ndarray  # item indices of one epoch, minority classes repeated (oversampling)
    crops: int  # random crops per row per epoch
    val_clips: list[Clip]
    val_x: np.ndarray  # (N, n_frames, n_mels) validation windows
    val_y: np.ndarray  # label index per validation window
    val_windows: list[int]  # windows per validation clip
    augment: AugmentSettings = AugmentSettings(copies=0)  # its window augmentation applies to training batches
    floor_db: float = -80.0  # the frontend's absolute floor (silence)
    band_hz: np.ndarray | None = None  # centre frequency of each mel band (the frequency warp)
    soft: np.ndarray | None = None  # (items, n_labels) a teacher's probabilities per item (trainer.teacher)
    teacher_weight: float = 0.0  # their weight in each training target

    @cached_property
    def sung(self) -> np.ndarray:
        """Whether each training item is a song clip (once, not per batch; the speech-only warp skips them)."""
        return np.array([item.clip.channel == "song" for item in self.items], bool)

    @property
    def has_validation(self) -> bool:
        return len(self.val_x) > 0

    def training_batch(self, items: np.ndarray, starts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Training windows with window augmentation (warp, gain, masks) drawn from `rng`.

        Targets are label indices, or (N, n_labels) with a teacher: one-hot labels blended with its
        probabilities."""
        x, y = self.windows(items, starts)
        x = augment_windows(x, self.augment, rng, self.floor_db, self.band_hz, self.sung[items])
        if self.soft is not None:
            w = np.float32(self.teacher_weight)
            return x, (1 - w) * np.eye(len(self.labels), dtype=np.float32)[y] + w * self.soft[items]
        return x, y

    @property
    def val_targets(self) -> np.ndarray:
        """Validation targets in the training batches' form (one-hot with a teacher), so one loss and
        one accuracy metric serve both."""
        if self.soft is not None:
            return np.eye(len(self.labels), dtype=np.float32)[self.val_y]
        return self.val_y

    def crop_sample(self, count: int, seed: int) -> np.ndarray:
        """Random windows of original (unaugmented) training clips, e.g. to adapt input normalisation."""
        originals = np.array([i for i, item in enumerate(self.items) if item.copy == 0])
        rng = np.random.default_rng(seed)
        picks = rng.choice(originals, size=count, replace=len(originals) < count)
        return self.windows(picks, self._starts(picks, rng))[0]

    def _starts(self, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        room = np.array([len(self.frames[i]) - self.n_frames + 1 for i in items])
        return (rng.random(len(items)) * room).astype(int)

    def epoch_plan(self, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(item index, crop start frame) of every training window of one epoch, shuffled.

        Drawn from (seed, epoch) alone, so a resumed run sees the epochs it would have seen.
        """
        rng = np.random.default_rng([seed, epoch])
        items = rng.permutation(np.repeat(self.rows, self.crops))
        return items, self._starts(items, rng)

    def windows(self, items: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([self.frames[i][s : s + self.n_frames] for i, s in zip(items, starts)])
        return x, self.y[items]

    def write_fit_items(self, path: Path) -> None:
        """One row per item behind the arrays fit() gets: its part, clip, copy and rows per epoch."""
        per_epoch = np.bincount(self.rows, minlength=len(self.items)) * self.crops
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["part", "item", "path", "speaker", "sha256", "label", "copy", "augmentation", "rows_per_epoch"])
            for i, item in enumerate(self.items):
                c = item.clip
                aug = item.aug.describe() if item.aug else ""
                w.writerow(["train", i, str(c.path), c.speaker, c.sha256, c.label, item.copy, aug, int(per_epoch[i])])
            for i, (c, n) in enumerate(zip(self.val_clips, self.val_windows)):
                w.writerow(["val", i, str(c.path), c.speaker, c.sha256, c.label, 0, "", n])


def oversample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Item indices with every present class repeated up to the largest class's count."""
    counts = np.bincount(y)
    target = counts.max()
    rows = []
    for cls in np.flatnonzero(counts):
        idx = np.flatnonzero(y == cls)
        whole, extra = divmod(target, len(idx))
        rows.append(np.concatenate([np.tile(idx, whole), rng.choice(idx, extra, replace=False)]))
    return np.sort(np.concatenate(rows))


def training_items(clips: list[Clip], augment: AugmentSettings, seed: int, sample_rate: int) -> list[Item]:
    items = []
    for c in clips:
        copies: list[Augmentation | RoomCopy] = [*plan_copies(augment, seed, c.sha256), *plan_room_copies(
            augment.rooms, augment.room_noise, augment.room_snr_db, seed, c.sha256, sample_rate)]
        items.append(Item(c, 0))
        items += [Item(c, k, aug) for k, aug in enumerate(copies, start=1)]
    return items


def build_training_data(
    train: list[Clip],
    val: list[Clip],
    labels: tuple[str, ...],
    frontend: Frontend,
    cache: FeatureCache,
    augment: AugmentSettings,
    eval_hop_frames: int,
    seed: int,
    oversampling: bool = True,
    crops: int = 1,
    teacher: np.ndarray | None = None,
    teacher_weight: float = 0.0,
) -> TrainingData:
    """The arrays of one run; `teacher`: (len(train), n_labels) soft labels of the training clips,
    blended into their targets."""
    index = {label: i for i, label in enumerate(labels)}
    row = {c.name: i for i, c in enumerate(train)}  # each item's clip, in `teacher`
    items = training_items(train, augment, seed, frontend.params.sample_rate)
    frames = [cache.frames(it.clip, it.aug) for it in progress(items, "features (train + augmented)")]
    y = np.array([index[it.clip.label] for it in items], dtype=np.int64)
    rows = oversample(y, np.random.default_rng([seed, 2])) if oversampling else np.arange(len(items))
    val_x, val_y, counts = [np.zeros((0, frontend.params.n_frames, frontend.params.n_mels), np.float32)], [], []
    rate = frontend.params.sample_rate
    for c in progress(val, "features (validation)"):
        windows = stack(file_windows(frontend, load_audio(c.path, rate), eval_hop_frames))
        val_x.append(windows)
        val_y += [index[c.label]] * len(windows)
        counts.append(len(windows))
    return TrainingData(
        labels=labels,
        n_frames=frontend.params.n_frames,
        items=items,
        frames=frames,
        y=y,
        rows=rows,
        crops=crops,
        val_clips=list(val),
        val_x=np.concatenate(val_x),
        val_y=np.array(val_y, dtype=np.int64),
        val_windows=counts,
        augment=augment,
        floor_db=frontend.params.floor_db,
        band_hz=mel_edges_hz(frontend.params)[1:-1],
        soft=None if teacher is None else teacher[[row[it.clip.name] for it in items]],
        teacher_weight=teacher_weight,
    )
