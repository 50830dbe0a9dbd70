"""Abstention that knows the room: the gate's modulation depth next to the smoothed top probability.

    python research/condition_abstain.py CV_DIR --bundles DIR --noise DIR --out OUT
        [--part validation] [--conditions clean,room] [--spans 3,5]
        [--thresholds 0.25,0.3,...] [--modulations 0,9,10,...] [--agree 0,2,3] [--margins 0,0.1]
        [--min-confidence 0.3,0.4]

Variants 26-32 found no threshold on the smoothed top probability alone that keeps the room's published
time at most 1/3 wrong at 25 % coverage on the test actors: in a room the model is often surely wrong.
Noise fills the pauses between syllables, so the speech band's modulation depth (the standard deviation
of its frame energy in dB, the gate's voice check, edge.gate) falls with the SNR. This renders each
fold's replay once per condition (trainer.replay), plays it through the daemon once while recording
every window (the gate's figures, the model's probabilities), then replays the daemon's decisions
offline with the real Smoother at every (span, threshold P) plus one more rule: an emotion is
published only while the EMA (same span) of the inferred windows' modulation depth is at least M dB,
else `uncertain`. A second rule, `--agree A`: an emotion is published only while each of the last A
inferred windows has it as its own top label (a room's guesses flicker; a speaker's emotion holds). A
third, `--margins D`: only while the smoothed top probability leads the next by at least D. M = 0,
A = 0 is today's daemon: the offline states at the first min_confidence, span and threshold are checked
against those the daemon published. `--min-confidence` sweeps the daemon's smoothing.min_confidence C too
(the smoothed probability a new emotion needs before it is published).

Writes OUT/abstain.json (per fold and setting) and OUT/abstain.md (mean over folds). Choose on
`--part validation` (validation actors, validation pool); the test actors are a report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.config import Settings
from edge.daemon import Daemon
from edge.model import EmotionModel
from edge.schema import SILENCE, UNCERTAIN
from edge.smoothing import Smoother
from trainer.conditions import pick_conditions
from trainer.replay import POOLS, fold_replays, play, published_time, score_published


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def record(bundle: Path, audio: np.ndarray, settings: Settings, abstain_below: float) -> tuple[list[dict], list, tuple]:
    """Play the replay through the daemon once: every window's (end_s, modulation dB, probabilities or None
    for a gated window), the states the daemon published (stream time, label) and the model's labels."""
    windows: list[dict] = []

    def hook(daemon: Daemon, model: EmotionModel) -> None:
        check, probabilities = daemon.gate.check, model.probabilities

        def logged_check(w):
            r = check(w)
            windows.append({"end_s": w.end_s, "modulation": r.modulation_db, "probs": None})
            return r

        def logged_probabilities(x):
            p = probabilities(x)
            windows[-1]["probs"] = p[0]
            return p

        daemon.gate.check = logged_check  # type: ignore[method-assign]
        model.probabilities = logged_probabilities  # type: ignore[method-assign]

    states, model = play(bundle, audio, settings, abstain_below, hook)
    return windows, states, model.labels


def decide(windows: list[dict], labels: tuple, settings: Settings, span: int, p: float, m: float,
           agree: int = 0, margin: float = 0.0,
           veto: Callable[[np.ndarray, dict, float], bool] | None = None) -> list:
    """The daemon's states (stream time, label) from the recorded windows, with the three rules: an emotion
    only while the modulation EMA is at least `m` dB, each of the last `agree` inferred windows has it as its
    own top, and the smoothed top leads the next by at least `margin`; else UNCERTAIN. `veto(smoothed, window,
    modulation EMA)` sees every inferred window; True turns a published emotion into UNCERTAIN too."""
    smoother = Smoother(labels, replace(settings.smoothing, windows=span), settings.gate, p)
    alpha, mod = 2.0 / (span + 1), None
    tops: deque[str] = deque(maxlen=max(agree, 1))
    states: list[tuple[float, str]] = []
    for w in windows:
        if w["probs"] is None:
            smoother.gated()
            if smoother.label == SILENCE:
                mod = None  # the smoothing starts afresh after silence, as the Smoother's
                tops.clear()
        else:
            mod = w["modulation"] if mod is None else alpha * w["modulation"] + (1 - alpha) * mod
            tops.append(labels[int(np.argmax(w["probs"]))])
            smoother.inferred(w["probs"])
            vetoed = veto is not None and veto(smoother.smoothed, w, mod)
            if smoother.label not in (None, SILENCE, UNCERTAIN) and (
                    mod < m or (agree and (len(tops) < agree or any(t != smoother.label for t in tops)))
                    or _margin(smoother.smoothed) < margin or vetoed):
                smoother.label = UNCERTAIN
        if smoother.label is not None and (not states or states[-1][1] != smoother.label):
            states.append((w["end_s"], smoother.label))
    return states


def sweep(target: Path, bundles: Path, noise: list[str], out: Path, part: str, conditions: str, spans: list[int],
          thresholds: list[float], modulations: list[float], agrees: list[int] | None = None,
          margins: list[float] | None = None,
          min_confidences: list[float] | None = None, seed: int = 0) -> dict:
    agrees, margins = agrees or [0], margins or [0.0]
    names = pick_conditions(conditions)
    settings = Settings()
    confidences = min_confidences or [settings.smoothing.min_confidence]
    settings = replace(settings, smoothing=replace(settings.smoothing, min_confidence=confidences[0]))
    rows: dict[str, dict[str, dict]] = {}  # setting -> condition -> fold -> result
    windows_seen: dict[str, dict[str, list[float]]] = {}  # condition -> fold -> inferred windows' modulation
    by_label: dict[str, dict[str, dict[str, list[float]]]] = {}  # setting -> condition -> label -> [published, wrong] s
    for run_dir, bundle, name, audio, truth in fold_replays(target, bundles, noise, out / "rooms", names, part, seed):
        first = replace(settings, smoothing=replace(settings.smoothing, windows=spans[0]))
        windows, published, labels = record(bundle, audio, first, thresholds[0])
        offline = decide(windows, labels, settings, spans[0], thresholds[0], 0.0)
        changes = [(t, s) for k, (t, s) in enumerate(published) if k == 0 or published[k - 1][1] != s]  # no repeats
        if len(offline) != len(changes) or any(a[1] != b[1] or abs(a[0] - b[0]) > 0.01 for a, b in zip(offline, changes)):
            k = next((i for i, (a, b) in enumerate(zip(offline, changes)) if a[1] != b[1] or abs(a[0] - b[0]) > 0.01),
                     min(len(offline), len(changes)))
            raise SystemExit(f"{run_dir.name} {name}: the offline decisions differ from the daemon's at state {k}: "
                             f"{offline[k:k + 3]} against {changes[k:k + 3]}")
        windows_seen.setdefault(name, {})[run_dir.name] = [w["modulation"] for w in windows if w["probs"] is not None]
        grid = [(c, w, p, m, a, d) for c in confidences for w in spans for p in thresholds for m in modulations
                for a in agrees for d in margins]
        for c, w, p, m, a, d in grid:
            with_c = replace(settings, smoothing=replace(settings.smoothing, min_confidence=c))
            published = published_time(decide(windows, labels, with_c, w, p, m, a, d), truth, labels)
            r = score_published(published, truth)
            key = f"C {c:g}, span {w}, P {p:g}, M {m:g}, A {a}" + (f", D {d:g}" if margins != [0.0] else "")
            rows.setdefault(key, {}).setdefault(name, {})[run_dir.name] = {"coverage": r["coverage"], "wrong": r["wrong"]}
            totals = by_label.setdefault(key, {}).setdefault(name, {})
            for label, (seconds, wrong) in published.items():
                totals[label] = [totals.get(label, [0.0, 0.0])[0] + seconds, totals.get(label, [0.0, 0.0])[1] + wrong]
        print(f"{run_dir.name} {name}: {len(windows)} windows, daemon's states reproduced", file=sys.stderr)
    summary = {key: {name: _mean(by_fold) for name, by_fold in conds.items()} for key, conds in rows.items()}
    modulation = {name: {q: round(float(np.percentile(np.concatenate([v for v in by_fold.values() if v] or [[0.0]]), q)), 2)
                         for q in (10, 50, 90)} for name, by_fold in windows_seen.items()}
    report = {"target": str(target), "bundles": str(bundles), "part": part, "pool": POOLS[part], "seed": seed,
              "modulation_percentiles": modulation, "summary": summary, "folds": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "abstain.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    header = " | ".join(f"{n}: coverage / wrong" for n in names)
    lines = [f"# Abstention with the modulation rule: {target}", "",
             f"The {part} actors' spoken clips, {POOLS[part]} pool, runs of 5 clips of one emotion; coverage and "
             "wrong share of speech time, mean over folds. Inferred windows' modulation depth (dB), 10th / 50th / "
             "90th percentile: " + "; ".join(f"{n} {v[10]:.1f} / {v[50]:.1f} / {v[90]:.1f}" for n, v in modulation.items()),
             "", f"| setting | {header} |", "|---|" + "---|" * len(names)]
    for key, conds in summary.items():
        cells = " | ".join(_cell(conds.get(n)) for n in names)
        lines.append(f"| {key} | {cells} |")
    if {"clean", "room"} <= set(names):
        lines += ["", "The fewest wrong in the room at a room coverage of at least X, per rule (the setting, then clean and "
                  "room as coverage / wrong):", "", "| rule | X | setting | clean | room |", "|---|---|---|---|---|"]
        frontier = _frontier(summary)
        for rule, floor, key in frontier:
            lines.append(f"| {rule} | {floor:g} | {key} | {_cell(summary[key]['clean'])} | {_cell(summary[key]['room'])} |")
        lines += ["", "What the room's published time says at those settings, summed over folds: each emotion's share of "
                  "it / the wrong share of that emotion's time:", ""]
        for key in dict.fromkeys(key for _, _, key in frontier):
            room = by_label[key]["room"]
            total = sum(v[0] for v in room.values()) or 1.0
            lines.append(f"- {key}: " + ", ".join(f"{label} {v[0] / total:.2f} / {v[1] / v[0]:.2f}"
                                                 for label, v in sorted(room.items(), key=lambda kv: -kv[1][0]) if v[0] > 0))
    (out / "abstain.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


RULES = {"M": "modulation", "A": "agreement", "D": "margin"}


def _rule(key: str) -> str:
    """'threshold', 'modulation', 'agreement', 'margin' or 'both' (two or more): the rules a setting adds to P."""
    on = [RULES[part.split()[0]] for part in key.split(", ") if part.split()[0] in RULES and float(part.split()[1]) > 0]
    return "both" if len(on) > 1 else on[0] if on else "threshold"


def _margin(p) -> float:
    """The smoothed top probability minus the next one."""
    top2 = np.sort(p)[-2:]
    return float(top2[1] - top2[0])


def _frontier(summary: dict, floors: tuple[float, ...] = (0.15, 0.2, 0.25)) -> list[tuple[str, float, str]]:
    """(rule, floor, setting): per room-coverage floor and rule, the setting with the fewest wrong in the room."""
    best = []
    for floor in floors:
        for rule in ("threshold", *RULES.values(), "both"):
            fits = [(c["room"]["wrong"], key) for key, c in summary.items() if _rule(key) == rule
                    and c.get("room", {}).get("wrong") is not None and c["room"]["coverage"] >= floor]
            if fits:
                best.append((rule, floor, min(fits)[1]))
    return best


def _mean(by_fold: dict[str, dict]) -> dict:
    cov = [r["coverage"] for r in by_fold.values()]
    wrong = [r["wrong"] for r in by_fold.values() if r["wrong"] is not None]
    return {"coverage": round(float(np.mean(cov)), 4), "wrong": round(float(np.mean(wrong)), 4) if wrong else None}


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{r['coverage']:.2f} / " + ("-" if r["wrong"] is None else f"{r['wrong']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target", help="a cross-validation or refit folder (its fold-K runs)")
    ap.add_argument("--bundles", required=True, help="DIR/fold-K[/bundle]: each fold's converted bundle")
    ap.add_argument("--noise", nargs="+", required=True, help="prepared noise folders (corpora/README.md)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--part", choices=sorted(POOLS), default="validation")
    ap.add_argument("--conditions", default="clean,room")
    ap.add_argument("--spans", default="3,5")
    ap.add_argument("--thresholds", default="0.25,0.3,0.35,0.4,0.44")
    ap.add_argument("--modulations", default="0,9,10,11,12,13,14")
    ap.add_argument("--agree", default="0", help="agreement rule: the last A windows' own tops (0: off)")
    ap.add_argument("--margins", default="0", help="margin rule: smoothed top minus the next at least D (0: off)")
    ap.add_argument("--min-confidence", help="the daemon's smoothing.min_confidence C, a list (default: its default)")
    args = ap.parse_args(argv)
    sweep(Path(args.target), Path(args.bundles), args.noise, Path(args.out), args.part, args.conditions,
          [int(v) for v in args.spans.split(",")], _floats(args.thresholds), _floats(args.modulations),
          [int(v) for v in args.agree.split(",")], _floats(args.margins),
          _floats(args.min_confidence) if args.min_confidence else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
