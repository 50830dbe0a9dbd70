"""A confidence fitted for the room: does a small correctness model rank room windows better than the top probability?

    python research/correctness_head.py CV_DIR --bundles DIR --noise DIR --out OUT [--conditions clean,room]
        [--span 5] [--thresholds 0.25,0.3,...] [--heads 0.3,0.35,...]

Variant 33 found that nothing the gate measures tells a right room reading from a wrong one. This asks the
model's own outputs, combined: per fold, a logistic regression (scikit-learn) predicts whether the smoothed
top label is right from the smoothed distribution (top, lead over the next, entropy), the window's own top, the
EMA of the speech band's modulation depth and the top label (one-hot, and times the depth: a per-emotion
confidence that knows the room). It is fitted on the fold's validation actors' windows, clean and room
(validation pool), and scored on those (in-sample) and on the test actors (evaluation pool, reported only):
the AUROC of right against wrong among the room's inferred windows, and the daemon's coverage / wrong share
when an emotion is published only while the head says at least h, against the threshold P alone.

Each fold's replays are played through the daemon once (condition_abstain.record, windows cached in
OUT/windows/) and decided offline with the real Smoother, as condition_abstain does. Writes OUT/head.json and
OUT/head.md (mean over folds).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from condition_abstain import _cell, _floats, _mean, decide, record

from edge.config import Settings
from trainer.conditions import pick_conditions
from trainer.replay import POOLS, fold_replays, published_time, score_published

PARTS = ("validation", "test")


def features(smoothed: np.ndarray, own: np.ndarray, modulation: float) -> np.ndarray:
    """What the head sees of one inferred window."""
    ranked = np.sort(smoothed)[::-1]
    entropy = -float(np.sum(smoothed * np.log(smoothed + 1e-9)))
    top = np.eye(len(smoothed))[int(np.argmax(smoothed))]
    depth = modulation / 30.0  # dB, to about 0..1
    return np.concatenate([[ranked[0], ranked[0] - ranked[1], entropy, float(own.max()), depth], top, top * depth])


def run_label(truth: list, t: float) -> str | None:
    """The emotion of the run playing at stream time t (the last clip begun by then)."""
    label = None
    for start, _, emotion in truth:
        if start <= t:
            label = emotion
    return label


def walk(windows: list[dict], labels: tuple, settings: Settings, span: int, p: float, head=None, h: float = 0.0,
         truth: list | None = None, seen: list | None = None) -> list:
    """The daemon's states (stream time, label) over recorded windows at EMA span and threshold p
    (condition_abstain.decide); with a head, an emotion only while head(features) >= h, else UNCERTAIN. `seen`
    collects (features, right) per inferred window (right: the smoothed top is the emotion of the run playing,
    from `truth`)."""

    def veto(smoothed: np.ndarray, w: dict, mod: float) -> bool:
        f = features(smoothed, np.asarray(w["probs"]), mod)
        if seen is not None and truth is not None:
            seen.append((f, labels[int(np.argmax(smoothed))] == run_label(truth, w["end_s"])))
        return head is not None and head(f) < h

    return decide(windows, labels, settings, span, p, 0.0, veto=veto)


def _auroc(right: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return None if len(set(right.tolist())) < 2 else round(float(roc_auc_score(right, score)), 4)


def recorded(cache: Path, target: Path, bundles: Path, noise: list[str], out: Path, part: str, names: list[str],
             settings: Settings, seed: int) -> dict:
    """{(fold, condition): (windows, truth, labels)}, each replay played through the daemon once and cached."""
    got = {}
    for run_dir, bundle, name, audio, truth in fold_replays(target, bundles, noise, out / "rooms", names, part, seed):
        path = cache / f"{part}-{run_dir.name}-{name}.json"
        if not path.is_file():
            windows, _, labels = record(bundle, audio, settings, 0.0)
            rows = [{"end_s": w["end_s"], "modulation": w["modulation"],
                     "probs": None if w["probs"] is None else [float(v) for v in w["probs"]]} for w in windows]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"labels": list(labels), "truth": truth, "windows": rows}) + "\n", encoding="utf-8")
            print(f"{run_dir.name} {part} {name}: {len(rows)} windows recorded", file=sys.stderr)
        data = json.loads(path.read_text(encoding="utf-8"))
        windows = [{**w, "probs": None if w["probs"] is None else np.array(w["probs"])} for w in data["windows"]]
        got[(run_dir.name, name)] = (windows, data["truth"], tuple(data["labels"]))
    return got


CONTINUOUS = 5  # features()' inputs before the top label's: `--no-label` keeps these only


def fit_head(replays: dict, fold: str, settings: Settings, span: int, inputs: int | None = None):
    """The fold's head: a logistic regression on its validation actors' windows (every recorded condition),
    on features()' first `inputs` values (None: all)."""
    from sklearn.linear_model import LogisticRegression

    seen: list = []
    for (f, _), (windows, truth, labels) in replays.items():
        if f == fold:
            walk(windows, labels, settings, span, 0.0, truth=truth, seen=seen)
    x, y = np.array([s[0][:inputs] for s in seen]), np.array([s[1] for s in seen])
    model = LogisticRegression(max_iter=2000).fit(x, y)
    return lambda v: float(model.predict_proba(v[None, :inputs])[0, 1])


def study(target: Path, bundles: Path, noise: list[str], out: Path, conditions: str, span: int,
          thresholds: list[float], heads: list[float], min_confidence: float | None = None, label: bool = True,
          seed: int = 0) -> dict:
    names = pick_conditions(conditions)
    settings = Settings()
    if min_confidence is not None:
        settings = replace(settings, smoothing=replace(settings.smoothing, min_confidence=min_confidence))
    replays = {part: recorded(out / "windows", target, bundles, noise, out, part, names, settings, seed) for part in PARTS}
    folds = sorted({f for f, _ in replays["validation"]})
    fitted = {f: fit_head(replays["validation"], f, settings, span, None if label else CONTINUOUS) for f in folds}
    report: dict = {"target": str(target), "bundles": str(bundles), "span": span,
                    "min_confidence": settings.smoothing.min_confidence, "label": label, "auroc": {}, "rules": {}}
    for part in PARTS:
        aurocs: dict[str, list] = {"top": [], "head": []}
        for f in folds:
            if (f, "room") not in replays[part]:
                continue
            windows, truth, labels = replays[part][(f, "room")]
            seen: list = []
            walk(windows, labels, settings, span, 0.0, truth=truth, seen=seen)
            right = np.array([s[1] for s in seen])
            aurocs["top"].append(_auroc(right, np.array([s[0][0] for s in seen])))
            aurocs["head"].append(_auroc(right, np.array([fitted[f](s[0]) for s in seen])))
        report["auroc"][part] = {k: [v for v in vals if v is not None] for k, vals in aurocs.items()}
        rules = [(f"P {p:g}", p, None, 0.0) for p in thresholds] + [(f"head {h:g}", 0.0, True, h) for h in heads]
        for key, p, use_head, h in rules:
            for name in names:
                scores = {}
                for f in folds:
                    windows, truth, labels = replays[part][(f, name)]
                    states = walk(windows, labels, settings, span, p, fitted[f] if use_head else None, h)
                    scores[f] = score_published(published_time(states, truth, labels), truth)
                report["rules"].setdefault(part, {}).setdefault(key, {})[name] = _mean(scores)
    out.mkdir(parents=True, exist_ok=True)
    (out / "head.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    lines = [f"# A correctness head against the top probability: {target}", "",
             f"EMA span {span}, min_confidence {settings.smoothing.min_confidence:g}"
             + ("" if label else "; the head without the top label (its five continuous inputs only)")
             + "; mean over folds. The head is "
             "fitted on each fold's validation actors (validation pool), so its validation figures are in-sample; "
             f"the test actors ({POOLS['test']} pool) are reported only.", "",
             "AUROC of right against wrong among the room's inferred windows (smoothed top probability / head):", ""]
    for part, a in report["auroc"].items():
        if not a["top"]:  # no room condition among those recorded
            continue
        lines.append(f"- {part}: {np.mean(a['top']):.3f} / {np.mean(a['head']):.3f} "
                     f"(per fold: {', '.join(f'{t:.2f}/{hh:.2f}' for t, hh in zip(a['top'], a['head']))})")
    lines += ["", "Coverage / wrong share of speech time, runs of 5 clips of one emotion:", "",
              "| rule | " + " | ".join(f"{part}: {n}" for part in PARTS for n in names) + " |",
              "|---|" + "---|" * (len(PARTS) * len(names))]
    for key in report["rules"]["validation"]:
        cells = [_cell(report["rules"][part][key][n]) for part in PARTS for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    (out / "head.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target", help="a cross-validation folder (its fold-K runs)")
    ap.add_argument("--bundles", required=True, help="DIR/fold-K[/bundle]: each fold's converted bundle")
    ap.add_argument("--noise", nargs="+", required=True, help="prepared noise folders (corpora/README.md)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--conditions", default="clean,room")
    ap.add_argument("--span", type=int, default=5)
    ap.add_argument("--thresholds", default="0.25,0.3,0.35,0.4,0.45")
    ap.add_argument("--heads", default="0.3,0.35,0.4,0.45,0.5,0.55,0.6")
    ap.add_argument("--min-confidence", type=float, help="the daemon's smoothing.min_confidence (default: its default)")
    ap.add_argument("--no-label", dest="label", action="store_false", help="the head without the top label's inputs")
    args = ap.parse_args(argv)
    study(Path(args.target), Path(args.bundles), args.noise, Path(args.out), args.conditions, args.span,
          _floats(args.thresholds), _floats(args.heads), args.min_confidence, args.label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
