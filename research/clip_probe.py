"""A linear probe of pooled clip features, per fold (research/yamnet_probe.py, research/whisper_probe.py).

A pretrained model can teach the shipped model's students only if it reads emotion better, on
actors it never heard, than the recipe's fold ensembles already do. The test of that: per fold of
trainer/recipe/folds.json, a logistic regression (standardised inputs, L2 strength C) fitted on the fold's 14
training actors' clips, scored as whole clips on its 2 validation actors (where one would choose) and
its 4 test actors (reported only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge.bundle import sha256_file
from trainer.corpus import LABELS
from trainer.crossval import fold_stats
from trainer.evaluate import metrics

GROUPS = ("all", "speech", "song")
FOLDS = Path(__file__).resolve().parents[1] / "trainer" / "recipe" / "folds.json"  # the shipped recipe's folds


def pooled(x: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (2 x channels): each channel's mean and standard deviation over the frames."""
    return np.concatenate([x.mean(0), x.std(0)])


def pooled_features(clips, layers, cache: Path) -> dict[str, np.ndarray]:
    """{layer: (clips, 2 x channels)}: each clip's mean and standard deviation over its frames of
    every layer `layers(clip)` returns as (frames, channels); kept in and read back from `cache`."""
    names = [c.name for c in clips]
    if cache.is_file():
        z = np.load(cache)
        if list(z["names"]) == names:
            return {k: z[k] for k in z.files if k != "names"}
    rows: dict[str, list] = {}
    for n, clip in enumerate(clips):
        for k, x in layers(clip).items():
            rows.setdefault(k, []).append(pooled(x))
        if n % 250 == 0:
            print(f"clips {n}/{len(names)}", flush=True)
    arrays = {k: np.array(v, np.float32) for k, v in rows.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), **arrays)
    return arrays


def model_record(path: Path) -> dict:
    """The probed model's file name, sha256 and size, for the report."""
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def _probe(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def probe_rows(features: dict[str, np.ndarray], clips, cs: tuple[float, ...]) -> tuple[list[int], list[dict]]:
    """(fold numbers, one row per (feature set, C) with UA mean and sd over the folds per side and group)."""
    y = np.array([LABELS.index(c.label) for c in clips])
    actor = np.array([c.speaker for c in clips])
    channel = np.array([c.channel for c in clips])
    folds = json.loads(FOLDS.read_text(encoding="utf-8"))["folds"]
    rows = []
    for layer, x in features.items():
        for c in cs:
            ua: dict[str, dict[str, list]] = {side: {g: [] for g in GROUPS} for side in ("val", "test")}
            for fold in folds:
                fit = np.isin(actor, fold["train"])
                probe = _probe(c)
                probe.fit(x[fit], y[fit])
                for side in ua:
                    for g in GROUPS:
                        sel = np.isin(actor, fold[side]) & ((channel == g) if g != "all" else True)
                        ua[side][g].append(metrics(list(y[sel]), list(probe.predict(x[sel])),
                                                   tuple(range(len(LABELS))))["unweighted_accuracy"])
            rows.append({"layer": layer, "C": c, **{side: {g: fold_stats(v) for g, v in by.items()}
                                                    for side, by in ua.items()}})
            print(layer, c, {s: [round(rows[-1][s][g]["mean"], 3) for g in GROUPS] for s in ua}, flush=True)
    return [f["fold"] for f in folds], rows


def write_report(out: Path, stem: str, title: str, model: dict, folds: list[int], rows: list[dict]) -> dict:
    """OUT/STEM.json and OUT/STEM.md: every row, and the one best on validation UA (all)."""
    best = max(rows, key=lambda r: r["val"]["all"]["mean"])
    summary = {"model": model, "folds": folds, "rows": rows, "chosen_on_validation_all": best}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    lines = [f"# {title}", "",
             f"`{model['file']}` ({model['bytes']} bytes, sha256 {model['sha256']}); a logistic regression per "
             "fold on the 14 training actors' clips; UA mean +- sd over the 5 folds of trainer/recipe/folds.json. "
             "Choose on validation; test is reported only.", "",
             "| layer | C | validation UA all / speech / song | test UA all / speech / song |", "|---|---|---|---|"]
    for r in rows:
        v, t = (" / ".join(f"{r[s][g]['mean']:.3f}" for g in GROUPS) for s in ("val", "test"))
        lines.append(f"| {r['layer']} | {r['C']} | {v} | {t} |")
    lines += ["", f"Best on validation UA (all): {best['layer']}, C {best['C']}: test "
              + " / ".join(f"{best['test'][g]['mean']:.3f} +- {best['test'][g]['std']:.3f}" for g in GROUPS) + "."]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return summary


def training_sides() -> list[tuple[str, ...]]:
    """Every set of actors the recipe trains on: each fold's training side, the same with its
    validation actors (a refit), and all of them (the final model)."""
    folds = json.loads(FOLDS.read_text(encoding="utf-8"))["folds"]
    sides = [tuple(sorted(f["train"])) for f in folds] + [tuple(sorted(f["train"] + f["val"])) for f in folds]
    return sides + [tuple(sorted({a for f in folds for a in f["train"] + f["val"] + f["test"]}))]


def write_teacher(path: Path, x: np.ndarray, clips, c: float) -> None:
    """A teacher file (trainer.teacher): for each training side, each of its clips' probabilities from
    a probe fitted on the side's other actors, two at a time held out (pairs in sorted order)."""
    from trainer.teacher import side_key

    y = np.array([LABELS.index(cl.label) for cl in clips])
    actor = np.array([cl.speaker for cl in clips])
    sides = {}
    for side in training_sides():
        probs = np.full((len(clips), len(LABELS)), np.nan, np.float32)
        for k in range(0, len(side), 2):
            held = np.isin(actor, side[k : k + 2])
            fit = np.isin(actor, side) & ~held
            probe = _probe(c).fit(x[fit], y[fit])
            probs[held] = probe.predict_proba(x[held])
        sides[side_key(side)] = probs
        print(f"teacher {side_key(side)}: {int(np.isfinite(probs[:, 0]).sum())} clips", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, names=np.array([cl.name for cl in clips]), labels=np.array(LABELS), **sides)
