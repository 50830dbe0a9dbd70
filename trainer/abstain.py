"""The abstention threshold: below which top probability the device says "uncertain", chosen on validation.

    moodmic-train abstain CONDITIONS_DIR [--max-wrong 0.33] [--condition room]
    moodmic-train abstain SWEEP_DIR ...     (folders of `moodmic-train replay --part validation --abstain-below P`)

Reads the per-clip results `moodmic-train conditions` cached (every fold's validation actors under the
validation pool's rooms and noise, and its test actors under the evaluation pool's), spoken clips only
(what a device hears). For a threshold t a clip is *covered* when its confidence (the top probability,
the mean of its windows) is at least t; of the covered clips, the *wrong* share is called with the wrong
emotion. The rule, fixed before any result: the smallest t (steps of 0.01) at which the wrong share of
the covered validation clips in `--condition` (default `room`: reverberation + voices + noise) is at
most `--max-wrong` (1/3). The test actors' coverage and wrong share at that t are reported, never used.
The result goes to CONDITIONS_DIR/abstain.json; `moodmic-convert --abstain FILE` puts the threshold into
the bundle (output.abstain_below).

A clip's mean stands in for the daemon's smoothed window probabilities here; the daemon's own coverage
on long replays is the measure that counts (issue [10], stage 5). So the same rule also reads a sweep:
SWEEP_DIR/*/replay.json, each the validation actors replayed through the daemon under the validation
pool with one threshold P; it takes the smallest P whose mean (over folds) wrong share of the published
time in `--condition` is at most `--max-wrong`. Replays made with `--span N` (the daemon's EMA span) are
grouped by span: the smallest such P per span, then the span at which it covers most of `--condition`;
abstain.json then names the span too (`smoothing_windows`), and the converter puts both in the bundle.
The daemon covers less than the clips' means suggest
(its smoothed windows are less sure than a clip's mean), which is why this is the one to ship.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError, UsageError

ABSTAIN_FILE = "abstain.json"
STEPS = np.round(np.arange(0.0, 1.0, 0.01), 2)


def _clips(conditions_dir: Path, part: str) -> dict[str, list[dict]]:
    """condition -> the spoken clips of every fold's `part` (validation or test)."""
    out: dict[str, list[dict]] = {}
    for path in sorted(conditions_dir.glob(f"cache/fold-*/{part}/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out.setdefault(data["condition"], []).extend(c for c in data["clips"] if c.get("channel") == "speech")
    return out


def coverage(clips: list[dict], t: float) -> tuple[float, float | None]:
    """(share of clips covered at t, wrong share of the covered ones; None when none is covered)."""
    if not clips:
        return 0.0, None
    covered = [c for c in clips if c["confidence"] >= t]
    wrong = sum(c["predicted"] != c["label"] for c in covered) / len(covered) if covered else None
    return len(covered) / len(clips), wrong


def choose(conditions_dir: str | Path, condition: str = "room", max_wrong: float = 1 / 3) -> dict[str, Any]:
    conditions_dir = Path(conditions_dir)
    val, test = _clips(conditions_dir, "validation"), _clips(conditions_dir, "test")
    if condition not in val:
        have = ", ".join(sorted(val)) or "none"
        raise UsageError(f"{conditions_dir}: no validation results for condition {condition!r} (have: {have}); "
                         "run moodmic-train conditions first")
    chosen = next((float(t) for t in STEPS if (w := coverage(val[condition], t)[1]) is not None and w <= max_wrong), None)

    def table(parts: dict[str, list[dict]], t: float) -> dict[str, dict[str, Any]]:
        rows = {}
        for name, clips in sorted(parts.items()):
            cov, wrong = coverage(clips, t)
            rows[name] = {"clips": len(clips), "coverage": round(cov, 4), "wrong": None if wrong is None else round(wrong, 4)}
        return rows

    t = chosen if chosen is not None else 0.0
    result = {
        "abstain_below": chosen,
        "rule": f"smallest t (steps of 0.01) with at most {max_wrong:.3f} of the covered validation speech clips "
                f"wrong in {condition!r}",
        "condition": condition, "max_wrong": max_wrong, "source": str(conditions_dir),
        "validation": table(val, t), "test (reported only)": table(test, t),
        "without_threshold": {"validation": table(val, 0.0), "test (reported only)": table(test, 0.0)},
    }
    (conditions_dir / ABSTAIN_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    where = conditions_dir / ABSTAIN_FILE
    if chosen is None:
        print(f"{where}: no threshold brings {condition!r} to at most {max_wrong:.2f} wrong on validation", file=sys.stderr)
    else:
        v = result["validation"]
        print(f"{where}: abstain below {chosen:.2f}; validation coverage {condition} {v[condition]['coverage']:.2f} "
              f"(wrong {v[condition]['wrong']:.2f}), clean {v.get('clean', {}).get('coverage', float('nan')):.2f}",
              file=sys.stderr)
    return result


def choose_from_replays(sweep_dir: str | Path, condition: str = "room", max_wrong: float = 1 / 3) -> dict[str, Any]:
    """The rule on daemon replays of the validation actors (a threshold sweep); writes SWEEP_DIR/abstain.json."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for path in sorted(sweep_dir.glob("*/replay.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("part") != "validation" or data.get("abstain_below") is None:
            raise UsageError(f"{path}: not a validation replay with --abstain-below; a threshold is chosen on the "
                             "validation actors only")
        summary = {name: {"coverage": v["coverage"][0], "wrong": v["wrong"][0] if v["wrong"] else None}
                   for name, v in data["summary"].items()}
        rows.append((data.get("smoothing_windows"), float(data["abstain_below"]), summary))
    if not rows or condition not in rows[0][2]:
        raise UsageError(f"{sweep_dir}: no validation replays of condition {condition!r}; run moodmic-train replay "
                         "--part validation --abstain-below P --out SWEEP_DIR/P for several P")
    # Per span, the smallest P that keeps the wrong share within max_wrong; then the span whose P covers most
    # of `condition` (a sweep without spans is one span: the daemon's default when it ran).
    spans = sorted({r[0] for r in rows}, key=lambda w: w or 0)
    best = []
    for w in spans:
        ok = sorted((r for r in rows if r[0] == w and (x := r[2][condition]["wrong"]) is not None and x <= max_wrong),
                    key=lambda r: r[1])
        if ok:
            best.append(ok[0])
    chosen = max(best, key=lambda r: r[2][condition]["coverage"]) if best else None
    keyed = any(w is not None for w in spans)
    result = {
        "abstain_below": chosen[1] if chosen else None,
        **({"smoothing_windows": chosen[0] if chosen else None} if keyed else {}),
        "rule": ("per smoothing span, " if keyed else "") + f"smallest swept P with at most {max_wrong:.3f} of the "
                f"published time wrong in {condition!r} (daemon replays of the validation actors, mean over folds)"
                + (f"; of those, the span covering most of {condition!r}" if keyed else ""),
        "condition": condition, "max_wrong": max_wrong, "source": str(sweep_dir),
        "sweep": {(f"span {w}, P {p:g}" if keyed else f"{p:g}"): summary
                  for w, p, summary in sorted(rows, key=lambda r: (r[0] or 0, r[1]))},
    }
    where = sweep_dir / ABSTAIN_FILE
    where.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if chosen is None:
        print(f"{where}: no swept threshold brings {condition!r} to at most {max_wrong:.2f} wrong", file=sys.stderr)
    else:
        c = chosen[2][condition]
        span = f" with an EMA span of {chosen[0]}" if chosen[0] else ""
        print(f"{where}: abstain below {chosen[1]:g}{span}; validation {condition} coverage {c['coverage']:.2f} "
              f"(wrong {c['wrong']:.2f})", file=sys.stderr)
    return result


def choose_any(folder: str | Path, condition: str = "room", max_wrong: float = 1 / 3) -> dict[str, Any]:
    """A conditions folder (clip rule) or a sweep of validation replays (daemon rule)."""
    folder = Path(folder)
    if any(folder.glob("*/replay.json")):
        return choose_from_replays(folder, condition, max_wrong)
    return choose(folder, condition, max_wrong)


def read_abstain(path: str | Path) -> dict[str, Any]:
    """An abstain.json for the converter: its threshold must be a probability from 0 to below 1."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        t = float(data["abstain_below"])
        if not 0.0 <= t < 1.0:
            raise ValueError(f"abstain_below {t} is not a probability below 1")
        span = data.get("smoothing_windows") or 0
        if isinstance(span, bool) or not isinstance(span, int) or not 0 <= span <= 100:
            raise ValueError(f"smoothing_windows {span!r} is not a span of 0-100 windows")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--abstain {path}: not an abstain.json of moodmic-train abstain with a threshold ({exc})") from exc
    return data
