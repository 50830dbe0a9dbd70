"""`moodmic-train calibrate CV_DIR`: one temperature for a logits recipe, fitted on the CV's validation actors.

Automations threshold on the confidence, so it should mean what it says. For every finished fold of
a cross-validation whose model outputs logits (`--logits`), the windows of its validation clips and
of its test clips (edge.features.file_windows at the run's evaluation hop, as the device sees
audio) go through the fold's model. One temperature T is fitted on the validation windows of all
folds together (minimum mean negative log-likelihood of softmax(logits / T) against the clip's
label); the test actors are never used to fit, only to report.

In a living room the model is less sure than in the studio, and an automation on its confidence should
know: with `--noise DIR` (noise recordings, as `moodmic-train conditions`), every clip is also rendered
under the rooms and noise of `--conditions` (default CONDITIONS below; trainer.rooms), the validation
actors with the validation pool, the test actors with the evaluation pool, and T is fitted on the
validation windows of every condition together. Written to CV_DIR/calibration.json:

    temperature      T, for the bundle (`moodmic-convert --calibration`)
    fitted_on        which windows T was fitted on
    conditions       the conditions rendered (["clean"] without --noise)
    folds            the folds used
    nll, ece         {val|test: {window|clip: {before (T = 1), after (T)}}}; ECE with 15 equal-width
                     confidence bins of the top class; a clip's probabilities are the mean of its
                     windows' (edge.predict.predict_audio)
    by_condition     {condition: {val|test: window ECE {before, after}}}
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge.audio import load_audio
from edge.errors import UsageError
from edge.features import FeatureParams, Frontend, file_windows, stack
from edge.model import softmax

from .crossval import finished_folds
from .progress import progress
from .rundir import read_run, read_servable_run

CALIBRATION = "calibration.json"
ECE_BINS = 15
# With --noise: the acceptance's room conditions at the level a living room makes them hard, not hopeless
CONDITIONS = "clean,reverb,far,room,noise-*-10"
POOLS = {"val": "validation", "test": "evaluation"}  # trainer.conditions.PARTS: whose noise each part hears


def nll(logits: np.ndarray, y: np.ndarray, t: float = 1.0) -> float:
    p = softmax(np.asarray(logits, np.float64), t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) (a bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top class: sum over confidence bins of |accuracy - confidence| x share."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = pred == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += abs(correct[inside].mean() - conf[inside].mean()) * inside.mean()
    return float(total)


def _fold_logits(run_dir: Path, frontend: Frontend, hop: int, labels: list[str], renderer, names: list[str]
                 ) -> dict[str, tuple]:
    """Per part (val, test): window logits, window labels, each window's (clip, condition) index and condition."""
    from .model import load_keras_model, outputs_logits, raw_outputs
    from .rooms import CONDITIONS as ALL

    run = read_servable_run(run_dir)
    model = load_keras_model(run_dir / run["keras_model"], compile=False)
    if not outputs_logits(model):
        raise UsageError(f"{run_dir}: its model outputs probabilities; a temperature needs a logits model (--logits)")
    with open(run_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for part, pool in POOLS.items():
        clips = [r for r in rows if r["split"] == part]
        windows, y, clip, cond = [], [], [], []
        for r in progress(clips, f"{run_dir.name} {part} windows x {len(names)} condition(s)"):
            x = load_audio(Path(r["path"]), frontend.params.sample_rate)
            for k, name in enumerate(names):
                heard = x if name == "clean" else renderer.render(x, ALL[name], pool, r["sha256"] or r["path"])[0]
                w = stack(file_windows(frontend, heard, hop))
                windows.append(w)
                y += [labels.index(r["label"])] * len(w)
                clip += [len(windows) - 1] * len(w)
                cond += [k] * len(w)
        out[part] = (raw_outputs(model, np.concatenate(windows)), np.array(y), np.array(clip), np.array(cond))
    return out


def _clip_probs(logits: np.ndarray, clip: np.ndarray, t: float) -> np.ndarray:
    p = softmax(logits, t)
    return np.stack([p[clip == c].mean(axis=0) for c in np.unique(clip)])


def _clip_labels(y: np.ndarray, clip: np.ndarray) -> np.ndarray:
    return np.array([y[clip == c][0] for c in np.unique(clip)])


def _renderer(cv_dir: Path, noise_dirs: list[str], conditions: str | None, seed: int, sr: int):
    """The Renderer and condition names for --noise (None, ["clean"] without it); a condition a pool has
    no recordings for is refused: a temperature fitted on fewer conditions than asked would not say so."""
    from .conditions import pick_conditions
    from .noisebank import NoiseBank
    from .rooms import CONDITIONS as ALL
    from .rooms import Renderer, RoomBank

    if not noise_dirs:
        if conditions:
            raise UsageError("--conditions needs --noise DIR (the recordings to render them with)")
        return None, ["clean"]
    names = pick_conditions(conditions or CONDITIONS)
    renderer = Renderer(NoiseBank.from_dirs(noise_dirs, sr), RoomBank(seed, sr, cv_dir / "conditions" / "rooms"), seed, sr)
    for n in names:
        for pool in POOLS.values():
            if why := renderer.missing(ALL[n], pool):
                raise UsageError(f"--conditions {n}: {why}; add such recordings to --noise or leave {n} out")
    return renderer, names


def calibrate_cv(cv_dir: str | Path, noise_dirs: list[str] | None = None, conditions: str | None = None,
                 seed: int = 0) -> dict[str, Any]:
    cv_dir = Path(cv_dir)
    folds = finished_folds(cv_dir)
    if not folds:
        raise UsageError(f"{cv_dir}: no finished fold-K runs; run moodmic-train cv --out {cv_dir} first")
    first = read_run(folds[0])
    params, labels = FeatureParams.from_dict(first["features"]), first["labels"]
    frontend, hop = Frontend(params), params.hop_frames(first["eval_hop_s"])
    renderer, names = _renderer(cv_dir, list(noise_dirs or []), conditions, seed, params.sample_rate)
    parts: dict[str, list] = {"val": [], "test": []}
    for d in folds:
        for part, arrays in _fold_logits(d, frontend, hop, labels, renderer, names).items():
            parts[part].append(arrays)
    t = fit_temperature(np.concatenate([a[0] for a in parts["val"]]), np.concatenate([a[1] for a in parts["val"]]))
    rendered = f" under {', '.join(names)} (validation-pool rooms and noise)" if renderer else ""
    result: dict[str, Any] = {
        "temperature": round(t, 4),
        "fitted_on": f"windows of the validation actors of every fold{rendered} (never a fold's test actors)",
        "conditions": names, "seed": seed if renderer else None,
        "noise": renderer.noise.describe() if renderer else None,
        "folds": [d.name for d in folds],
        "ece_bins": ECE_BINS,
        "nll": {}, "ece": {}, "windows": {}, "clips": {}, "by_condition": {n: {} for n in names},
    }
    for part, items in parts.items():
        z, y, cond = (np.concatenate([i[k] for i in items]) for k in (0, 1, 3))
        result["windows"][part] = int(len(y))
        result["clips"][part] = int(sum(len(np.unique(i[2])) for i in items))
        result["nll"][part] = {"before": round(nll(z, y), 4), "after": round(nll(z, y, t), 4)}
        clip_before = np.concatenate([_clip_probs(zz, c, 1.0) for zz, _, c, _ in items])
        clip_after = np.concatenate([_clip_probs(zz, c, t) for zz, _, c, _ in items])
        clip_y = np.concatenate([_clip_labels(yy, c) for _, yy, c, _ in items])
        result["ece"][part] = {
            "window": {"before": round(ece(softmax(z, 1.0), y), 4), "after": round(ece(softmax(z, t), y), 4)},
            "clip": {"before": round(ece(clip_before, clip_y), 4), "after": round(ece(clip_after, clip_y), 4)},
        }
        for k, n in enumerate(names):
            zk, yk = z[cond == k], y[cond == k]
            result["by_condition"][n][part] = {"before": round(ece(softmax(zk, 1.0), yk), 4),
                                               "after": round(ece(softmax(zk, t), yk), 4)}
    (cv_dir / CALIBRATION).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{cv_dir / CALIBRATION}: temperature {t:.3f}; ECE (test windows{', every condition' if renderer else ''}) "
          f"{result['ece']['test']['window']['before']:.3f} -> {result['ece']['test']['window']['after']:.3f}", file=sys.stderr)
    return result
