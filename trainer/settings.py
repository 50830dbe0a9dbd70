"""Every setting of a run, in frozen dataclasses: RunSettings holds the split, augmentation and fit settings.

settings.json in a run directory holds them (`to_dict`), so `--resume` continues a run as it was
started; the CLI's options address them by dotted path (e.g. `fit.epochs`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from edge.errors import UsageError

from .augment import AugmentSettings
from .splits import SplitSettings

SETTINGS_FILE = "settings.json"
MONITORS = {"val_loss": "min", "val_accuracy": "max"}  # validation quantities fit() may watch, and their better direction


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 60  # at most; early stopping usually ends sooner
    batch_size: int = 32
    learning_rate: float = 3e-4  # Adam
    focal_gamma: float = 2.0
    patience: int = 10  # early stopping: epochs without a better validation loss
    lr_patience: int = 4  # ReduceLROnPlateau: epochs without a better validation loss
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    monitor: str = "val_loss"  # watched by EarlyStopping, ReduceLROnPlateau and ModelCheckpoint (MONITORS)
    crops: int = 1  # random window crops per training row per epoch
    oversample: bool = True  # repeat minority-class items (training split only)
    # Seed of the weights, the epochs' crops and batch augmentation; None: the run seed. Members of an
    # ensemble differ only here: same folds, same cached augmented copies (those follow the run seed).
    init_seed: int | None = None
    # The learning rate of each epoch, for a run without a validation side (the final model replays
    # its cross-validation's median schedule: trainer/final.py); () = learning_rate throughout.
    lr_schedule: tuple[float, ...] = ()
    # Distillation (trainer.teacher): a teacher file of soft labels, and their weight in each target.
    teacher: str = ""
    teacher_weight: float = 0.0
    teacher_song: bool = True  # False: sung clips keep their plain labels (the teacher reads song worse)

    def member_seed(self, run_seed: int) -> int:
        return run_seed if self.init_seed is None else self.init_seed


@dataclass(frozen=True)
class ModelSettings:
    band_mean: bool = True  # subtract each mel band's mean over the window (inside the model)
    logits: bool = True  # output logits (softmax in the loss); the bundle carries a temperature
    ensemble: int = 1  # copies of the architecture averaged inside one graph

    @classmethod
    def from_dict(cls, data: dict | None) -> ModelSettings:
        """A run's model settings; runs written before they existed had none of these additions."""
        if data is None:
            return LEGACY_MODEL
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


LEGACY_MODEL = ModelSettings(band_mean=False, logits=False, ensemble=1)


@dataclass(frozen=True)
class RunSettings:
    data: str = ""  # a RAVDESS-named folder or a CSV manifest
    out: str = ""  # the run directory (cv: the folder holding fold-K/ runs)
    seed: int = 0
    arch: str = "seed"
    eval_hop_s: float = 1.0  # seconds between windows when scoring whole files
    cache: str = ""  # feature cache folder; "" = ~/.cache/moodmic/features
    # WebRTC enhancement in front of the features (edge.enhance), written into the bundle's features: 0 = off
    webrtc_noise_suppression: int = 0
    webrtc_auto_gain_dbfs: int = 0
    split: SplitSettings = field(default_factory=SplitSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    fit: FitSettings = field(default_factory=FitSettings)
    model: ModelSettings = field(default_factory=ModelSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        settings = _from_dict(cls, data)
        if "model" not in data:  # a run written before model settings existed
            settings = replace(settings, model=LEGACY_MODEL)
        return settings


def _from_dict(cls, data: dict[str, Any]):
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value, default = data[f.name], getattr(cls(), f.name)
        if is_dataclass(default):
            value = _from_dict(type(default), value)
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def dropped_settings(data: dict[str, Any], cls=RunSettings, prefix: str = "") -> list[str]:
    """Settings in saved `data` that this trainer no longer has, set to anything but off (0, False, "",
    None, empty): options of research variants that left the trainer (research/README.md)."""
    known = {f.name: f for f in fields(cls)}
    out = []
    for key, value in data.items():
        if key not in known:
            if value not in (0, False, "", None, [], {}):
                out.append(f"{prefix}{key} = {value!r}")
        elif isinstance(value, dict) and is_dataclass(getattr(cls(), key)):
            out += dropped_settings(value, type(getattr(cls(), key)), f"{prefix}{key}.")
    return out


def trainable_settings(data: dict[str, Any], source: str | Path) -> RunSettings:
    """RunSettings.from_dict for a run about to be trained again (resumed, refitted, trained on every
    actor): refuses settings that only the research code that left the trainer understood."""
    dropped = dropped_settings(data)
    if dropped:
        raise UsageError(f"{source}: was trained with {', '.join(dropped)}, which this moodmic-train no longer has "
                         "(research/README.md says where it went); train it with the moodmic that started it")
    return RunSettings.from_dict(data)


def get_setting(settings: RunSettings, path: str) -> Any:
    """A setting by dotted path, e.g. 'fit.epochs'."""
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def with_setting(settings, path: str, value):
    head, _, rest = path.partition(".")
    return replace(settings, **{head: with_setting(getattr(settings, head), rest, value) if rest else value})


def settings_for_resume(run_dir: Path, requested: RunSettings, explicit: set[str]) -> RunSettings:
    """The saved settings of `run_dir`; an explicitly given setting must agree with them."""
    path = run_dir / SETTINGS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir}: no {SETTINGS_FILE}, so there is no run to resume; drop --resume to start one")
    saved = trainable_settings(json.loads(path.read_text(encoding="utf-8"))["settings"], run_dir)
    free = {"out", "cache"}  # where things are, not what is trained
    conflicts = [p for p in sorted(explicit - free) if get_setting(requested, p) != get_setting(saved, p)]
    if conflicts:
        detail = "; ".join(f"{p}: saved {get_setting(saved, p)!r}, given {get_setting(requested, p)!r}" for p in conflicts)
        raise UsageError(f"{run_dir}: a resumed run keeps its settings ({detail}); drop those options or start a new run")
    return replace(saved, out=requested.out, cache=requested.cache if "cache" in explicit else saved.cache)
