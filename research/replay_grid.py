"""The daemon's decision settings chosen together on validation replays: hop, smoothing span, threshold.

    python research/replay_grid.py CV_DIR --bundles DIR --noise DIR --out OUT
        [--part validation] [--conditions clean,room] [--hops 1.0,0.5] [--spans 2,3,5]
        [--thresholds 0.3,0.35,...]

Issue [10] measures a device by coverage (the share of speech time with an emotion published) and
wrong time, in runs of 5 clips of one emotion (trainer.replay). A state lags its speech: a window is
2.6 s, a decision comes every `windows.hop_seconds`, and the smoothing carries the last run's
probabilities into the next, so the start of every run is uncertain or wrong whatever the threshold.
`moodmic-train replay --abstain-below P` sweeps the threshold alone, at the daemon's defaults (hop
1 s, EMA over 3 windows); this renders each fold's replay once per condition and plays it through the
daemon at every (hop, span, threshold), with each fold's converted bundle (`DIR/fold-K[/bundle]`).

Writes OUT/grid.json (per fold and setting) and OUT/grid.md (mean over folds). Choose on
`--part validation` (the validation actors under the validation pool); test actors are a report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge.config import Settings, SmoothingSettings, WindowSettings
from trainer.conditions import pick_conditions
from trainer.replay import POOLS, fold_replays, replay_fold


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def grid(target: Path, bundles: Path, noise: list[str], out: Path, part: str, conditions: str,
         hops: list[float], spans: list[int], thresholds: list[float], seed: int = 0) -> dict:
    names = pick_conditions(conditions)
    settings = {(h, w): Settings(windows=WindowSettings(hop_seconds=h), smoothing=SmoothingSettings(windows=w))
                for h in hops for w in spans}
    rows: dict[str, dict[str, dict]] = {}  # setting key -> condition -> fold -> result
    for run_dir, bundle, name, audio, truth in fold_replays(target, bundles, noise, out / "rooms", names, part, seed):
        for (h, w), s in settings.items():
            for p in thresholds:
                r = replay_fold(bundle, audio, truth, s, p)
                key = f"hop {h:g} s, span {w}, P {p:g}"
                rows.setdefault(key, {}).setdefault(name, {})[run_dir.name] = {"coverage": r["coverage"], "wrong": r["wrong"]}
        print(f"{run_dir.name} {name}: {len(settings) * len(thresholds)} settings", file=sys.stderr)
    pool = POOLS[part]
    summary = {key: {name: _mean(by_fold) for name, by_fold in conds.items()} for key, conds in rows.items()}
    report = {"target": str(target), "bundles": str(bundles), "part": part, "pool": pool, "seed": seed,
              "summary": summary, "folds": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    header = " | ".join(f"{n}: coverage / wrong" for n in names)
    lines = [f"# Daemon settings on replays: {target}", "",
             f"The {part} actors' spoken clips, {pool} pool, runs of 5 clips of one emotion; coverage and wrong "
             "share of speech time, mean over folds.", "", f"| setting | {header} |",
             "|---|" + "---|" * len(names)]
    for key, conds in summary.items():
        cells = [_cell(conds[n]) if n in conds else "not measured" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    (out / "grid.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: grid.json, grid.md", file=sys.stderr)
    return report


def _cell(c: dict) -> str:
    return f"{c['coverage']:.2f} / " + ("-" if c["wrong"] is None else f"{c['wrong']:.2f}")


def _mean(by_fold: dict[str, dict]) -> dict:
    wrong = [r["wrong"] for r in by_fold.values() if r["wrong"] is not None]
    return {"coverage": round(float(np.mean([r["coverage"] for r in by_fold.values()])), 4),
            "wrong": round(float(np.mean(wrong)), 4) if wrong else None, "folds": len(by_fold)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", type=Path, help="a cv or members folder, every fold finished")
    ap.add_argument("--bundles", type=Path, required=True, help="each fold's converted bundle (DIR/fold-K[/bundle])")
    ap.add_argument("--noise", nargs="+", required=True, help="prepared noise corpora (corpora/README.md)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--part", choices=sorted(POOLS), default="validation")
    ap.add_argument("--conditions", default="clean,room")
    ap.add_argument("--hops", type=_floats, default=[1.0, 0.5])
    ap.add_argument("--spans", type=lambda t: [int(v) for v in t.split(",") if v], default=[2, 3, 5])
    ap.add_argument("--thresholds", type=_floats, default=[0.3, 0.35, 0.4, 0.44, 0.48, 0.52])
    a = ap.parse_args(argv)
    grid(a.target, a.bundles, a.noise, a.out, a.part, a.conditions, a.hops, a.spans, a.thresholds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
