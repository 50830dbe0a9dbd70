"""The converter's view of a trainer run directory (format: trainer/rundir.py).

Which clips are training (representative windows) and validation (parity) comes from the run's
manifest.csv (a run of split `all` has no validation side: parity then runs on the training clips,
`--parity-side train`), so the converter sees exactly the split the trainer used. With `--data DIR` the
corpus is read from DIR instead (moved or re-copied data) and each clip keeps the split of the
recording with the same sha256 in the run's manifest.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.audio import load_audio
from edge.errors import ConfigError, MissingInputError
from edge.features import FeatureParams

RUN_FILE = "run.json"
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class RunInputs:
    run_dir: Path
    run: dict[str, Any]
    labels: tuple[str, ...]
    features: FeatureParams
    eval_hop_s: float
    arch: str
    train_clips: list[tuple[Path, str]]  # (audio file, label)
    val_clips: list[tuple[Path, str]]

    @property
    def outputs_logits(self) -> bool:
        """The model ends without softmax (settings.model.logits): its bundle's output kind is "logits"."""
        return bool((self.run.get("settings", {}).get("model") or {}).get("logits", False))

    def validation_audio(self) -> list[tuple[np.ndarray, int]]:
        return self.side_audio("val")

    def side_audio(self, side: str) -> list[tuple[np.ndarray, int]]:
        """(audio, label index) of every clip of the run's `side` ("val" or "train")."""
        clips = self.val_clips if side == "val" else self.train_clips
        return [(load_audio(p, self.features.sample_rate), self.labels.index(label)) for p, label in clips]

    def keras_infer(self):
        from trainer.model import batched_infer, load_keras_model

        return batched_infer(load_keras_model(self.run_dir / self.run["keras_model"], compile=False))

    def training_summary(self) -> dict[str, Any]:
        """What the bundle records about training: run name, data, split with actor lists, seed, metrics."""
        keep = ("name", "arch", "parameters", "data", "split", "seed", "metrics", "training", "created_utc", "members", "cv")
        summary = {k: self.run[k] for k in keep if k in self.run}
        # A shipped bundle names no folder of the machine that built it: the corpus by its folder's name,
        # ensemble members by name, seed and epochs.
        if "data" in summary:
            data = {k: v for k, v in summary["data"].items() if k not in ("path", "manifest")}
            summary["data"] = {"corpus": Path(summary["data"].get("path", "")).name, **data}
        if "members" in summary:
            summary["members"] = [{k: v for k, v in m.items() if k != "run"} for m in summary["members"]]
        return summary


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); re-run moodmic-train or pass --data") from exc
    if not rows or not {"path", "label", "split", "sha256"} <= set(rows[0]):
        raise ConfigError(f"{path}: not a moodmic-train manifest (needs path,label,split,sha256 columns)")
    return rows


def load_run(run_dir: Path, data: Path | None = None, parity_side: str = "val") -> RunInputs:
    from trainer.run import read_servable_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingInputError(f"{run_dir}: no such run directory; give a directory written by moodmic-train")
    try:
        run = read_servable_run(run_dir)
        labels = tuple(run["labels"])
        features = FeatureParams.from_dict(run["features"])
        keras_model = run_dir / run["keras_model"]
        eval_hop_s, arch = float(run["eval_hop_s"]), str(run["arch"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{run_dir}/{RUN_FILE}: corrupt or incomplete ({exc}); re-run moodmic-train") from exc
    if not keras_model.is_file():
        raise MissingInputError(f"{keras_model}: the run's Keras model is missing; re-run moodmic-train")
    manifest = run_dir / MANIFEST
    if not manifest.is_file():
        raise MissingInputError(f"{manifest}: missing, so the run's split is unknown; re-run moodmic-train")
    rows = _rows(manifest)
    if data is None:
        clips = [(Path(r["path"]), r["label"], r["split"]) for r in rows]
        missing = [p for p, _, s in clips if s in ("train", "val") and not p.is_file()]
        if missing:
            raise MissingInputError(f"{missing[0]}: audio of the run is gone ({len(missing)} files); pass --data DIR")
    else:
        from trainer.corpus import load_corpus

        split_of = {r["sha256"]: r["split"] for r in rows if r["split"]}
        corpus = load_corpus(data)
        clips = [(c.path, c.label, split_of.get(c.sha256, "")) for c in corpus.usable]
    train = [(p, label) for p, label, s in clips if s == "train"]
    val = [(p, label) for p, label, s in clips if s == "val"]
    if not train:
        raise ConfigError(f"{run_dir}: no training clips found for the run's split; check --data")
    if not val and parity_side == "val":
        hint = ("it was trained on every clip (split all): pass --parity-side train" if run.get("split", {}).get("kind") == "all"
                else "check --data")
        raise ConfigError(f"{run_dir}: no validation clips for the parity gate; {hint}")
    unknown = sorted({label for _, label in train + val} - set(labels))
    if unknown:
        raise ConfigError(f"{run_dir}: clips labelled {unknown} that the model does not know; check --data")
    return RunInputs(run_dir, run, labels, features, eval_hop_s, arch, train, val)
