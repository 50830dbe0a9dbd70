"""What a device publishes in a room: long replays through the daemon, coverage and wrong time.

    moodmic-train replay CV_DIR --bundles DIR --noise NOISE_DIR [--conditions clean,room,...] [--out OUT]

For each fold, its test actors' spoken clips are rendered under the evaluation pool's conditions
(trainer.rooms, the renderings `moodmic-train conditions` scores), grouped in runs of RUN_CLIPS clips of
one actor and one emotion (a person in one mood for half a minute), the runs shuffled (seeded) and
joined into one recording per fold and condition. That recording goes through the daemon as a device
runs it (edge.daemon.Daemon: gate on, smoothing, the bundle's abstention threshold; a file source at
full speed), with the fold's converted bundle (`DIR/fold-K[/bundle]`). Every state the daemon publishes
holds from its window's end until the next state. The truth is speech time: each clip's span from its
first to its last voiced frame, found on the clean clip (trainer.rooms.speech_span; about half of a
RAVDESS clip is the silence before and after the sentence, which no state can be right or wrong about):

- coverage: the share of the speech time during which an emotion is published (not silence,
  uncertain or nothing yet);
- wrong: of that time, the share during which the published emotion is not the one being spoken.

Results: OUT/replay.json and OUT/replay.md (mean +- sd over folds per condition); OUT defaults to
CV_DIR/replay. The test actors under the evaluation pool are a report, never a choice; `--part
validation` replays the validation actors under their own pool, and `--abstain-below P` tries a
threshold there without converting again (a sweep to choose one on), `--span N` with the daemon's EMA
over N windows instead of the bundle's span (research/VARIANTS.md, variant 32: the two trade).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge.audio import load_audio
from edge.config import Settings, SmoothingSettings
from edge.daemon import Daemon, StdoutPublisher
from edge.model import EmotionModel
from edge.schema import StateMessage
from edge.sources import GeneratorSource

from .conditions import bundle_dir, find_folds, fold_clips, pick_conditions
from .crossval import fold_stats
from .noisebank import NoiseBank, stable_seed
from .rooms import CONDITIONS, Renderer, RoomBank, speech_span

RUN_CLIPS = 5  # clips of one actor and emotion in a row
POOLS = {"test": "evaluation", "validation": "validation"}  # each part with its own pool, as `conditions`


class _Recorder(StdoutPublisher):
    """A publisher that keeps every state message (what a subscriber would see), printing nothing."""

    def __init__(self) -> None:
        super().__init__(states=False)
        self.states: list[StateMessage] = []

    def publish_state(self, msg: StateMessage) -> None:
        self.states.append(msg)


def build_replay(clips: list, render, seed: int, rate: int) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """(audio, [(start_s, end_s, emotion)]) of runs of RUN_CLIPS clips of one actor and emotion, shuffled.
    `render(clip)` gives (audio, (speech start_s, end_s) within it); the truth is those speech spans."""
    groups: dict[tuple[str, str], list] = {}
    for c in sorted(clips, key=lambda c: c.name):
        groups.setdefault((c.speaker, c.label), []).append(c)
    runs = [g[i : i + RUN_CLIPS] for g in groups.values() for i in range(0, len(g) - RUN_CLIPS + 1, RUN_CLIPS)]
    order = np.random.default_rng(stable_seed(seed, "replay-order")).permutation(len(runs))
    parts, truth, t = [], [], 0.0
    for i in order:
        for c in runs[i]:
            x, (s0, s1) = render(c)
            parts.append(x)
            truth.append((t + s0, t + s1, c.label))
            t += len(x) / rate
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), truth


def published_time(states: list[tuple[float, str]], truth: list[tuple[float, float, str]],
                   labels: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Per published emotion: (seconds of the truth's spans it covers, seconds of those that are another emotion).
    Each (time_s, label) holds until the next one; states that are not a label (silence, uncertain) cover nothing."""
    out: dict[str, tuple[float, float]] = {}
    for k, (start, label) in enumerate(states):
        end = states[k + 1][0] if k + 1 < len(states) else (truth[-1][1] if truth else 0.0)
        if label not in labels or end <= start:
            continue
        published, wrong = out.get(label, (0.0, 0.0))
        for t0, t1, emotion in truth:
            overlap = max(0.0, min(end, t1) - max(start, t0))
            published += overlap
            wrong += overlap if emotion != label else 0.0
        out[label] = (published, wrong)
    return out


def score_published(published: dict[str, tuple[float, float]], truth: list[tuple[float, float, str]]) -> dict:
    """Time-weighted coverage and wrong share of the truth's spans, from published_time."""
    total = sum(t1 - t0 for t0, t1, _ in truth)
    covered = sum(p for p, _ in published.values())
    wrong = sum(w for _, w in published.values())
    return {"speech_s": round(total, 1), "coverage": round(covered / total, 4) if total else 0.0,
            "wrong": round(wrong / covered, 4) if covered else None}


def score_states(states: list[tuple[float, str]], truth: list[tuple[float, float, str]], labels: tuple[str, ...]) -> dict:
    """Time-weighted coverage and wrong share of the truth's spans: each (time_s, label) holds until the next one."""
    return score_published(published_time(states, truth, labels), truth)


def play(bundle: Path, audio: np.ndarray, settings: Settings, abstain_below: float | None = None,
         before_run: Callable[[Daemon, EmotionModel], None] | None = None) -> tuple[list[tuple[float, str]], EmotionModel]:
    """The replay through the daemon, fed 0.1-s blocks as a microphone gives them: the states it published
    (stream time, label) and the model. `abstain_below` replaces the bundle's threshold (a sweep on
    validation); `before_run(daemon, model)` may hook into them before the first block."""
    model = EmotionModel.load(bundle)
    if abstain_below is not None:
        model.bundle = replace(model.bundle, abstain_below=abstain_below)
    recorder = _Recorder()
    rate = model.bundle.features.sample_rate
    blocks = (audio[i : i + rate // 10] for i in range(0, len(audio), rate // 10))
    daemon = Daemon(settings, model, GeneratorSource(blocks, rate, rate), recorder)
    if before_run:
        before_run(daemon, model)
    daemon.run()
    t0 = daemon.audio_t0 or 0.0
    states = [(datetime.fromisoformat(m.window_end.replace("Z", "+00:00")).timestamp() - t0, m.label)
              for m in recorder.states]
    return states, model


def replay_fold(bundle: Path, audio: np.ndarray, truth: list, settings: Settings,
                abstain_below: float | None = None) -> dict:
    """The replay through the daemon, scored; `abstain_below` replaces the bundle's threshold."""
    states, model = play(bundle, audio, settings, abstain_below)
    return {**score_states(states, truth, model.labels), "states": len(states),
            "called": {label: round(sum(1 for _, s in states if s == label) / max(len(states), 1), 3)
                       for label in sorted({s for _, s in states})}}


def fold_replays(target: Path, bundles: Path, noise_dirs: list[str], rooms_dir: Path, names: list[str], part: str,
                 seed: int) -> Iterator[tuple[Path, Path, str, np.ndarray, list]]:
    """(fold run, its bundle, condition, audio, truth) of each fold's replay under each condition its part's
    pool can render (the others are named on stderr as not measured)."""
    folds = find_folds(target)
    pool = POOLS[part]
    for run_dir in folds:
        bundle = bundle_dir(bundles, run_dir, len(folds) == 1)
        rate = EmotionModel.load(bundle).bundle.features.sample_rate
        renderer = Renderer(NoiseBank.from_dirs(list(noise_dirs), rate), RoomBank(seed, rate, rooms_dir), seed, rate)
        clips = [c for c in fold_clips(run_dir, None, None, seed).get(part, ()) if c.channel == "speech"]
        for name in names:
            cond = CONDITIONS[name]
            why = renderer.missing(cond, pool)
            if why:
                print(f"{run_dir.name} {name}: not measured ({why})", file=sys.stderr)
                continue

            def render(c, renderer=renderer, cond=cond, rate=rate) -> tuple[np.ndarray, tuple[float, float]]:
                clean = load_audio(c.path, rate)
                return renderer.render(clean, cond, pool, c.sha256)[0], speech_span(clean, rate)

            yield (run_dir, bundle, name, *build_replay(clips, render, seed, rate))


def measure_replays(target: str | Path, bundles: str | Path, noise_dirs: list[str], out: str | Path | None = None,
                    conditions: str | None = None, seed: int = 0, hold: bool = False, part: str = "test",
                    abstain_below: float | None = None, span: int | None = None) -> dict[str, Any]:
    target, bundles = Path(target), Path(bundles)
    out = Path(out) if out else target / "replay"
    names = pick_conditions(conditions or "clean,reverb,far,noise-voices-15,noise-household-10,noise-music-10,"
                                          "noise-fan-10,room")
    pool = POOLS[part]
    # the daemon's defaults; `hold`: smoothing.uncertain false (the last emotion held, no abstention); `span`:
    # this EMA span instead of the bundle's (0: the bundle's)
    settings = Settings(smoothing=SmoothingSettings(uncertain=not hold, windows=span or 0))
    results: dict[str, dict[str, dict]] = {}
    for run_dir, bundle, name, audio, truth in fold_replays(target, bundles, noise_dirs, out / "rooms", names, part, seed):
        r = replay_fold(bundle, audio, truth, settings, abstain_below)
        results.setdefault(name, {})[run_dir.name] = r
        wrong = "-" if r["wrong"] is None else f"{r['wrong']:.2f}"
        print(f"{run_dir.name} {name}: {r['speech_s']:.0f} s of speech, coverage {r['coverage']:.2f}, wrong {wrong}",
              file=sys.stderr)

    def mean_sd(values: list[float]) -> list[float] | None:
        s = fold_stats(values) if values else None
        return [round(s["mean"], 4), round(s["std"], 4)] if s else None

    summary = {name: {"coverage": mean_sd([r["coverage"] for r in by_fold.values()]),
                      "wrong": mean_sd([r["wrong"] for r in by_fold.values() if r["wrong"] is not None]),
                      "folds": len(by_fold)} for name, by_fold in results.items()}
    how = ("edge.config defaults (gate on)" + (", smoothing.uncertain false" if hold else "")
           + (f", smoothing.windows {span}" if span else ""))
    report = {"target": str(target), "bundles": str(bundles), "part": part, "pool": pool, "run_clips": RUN_CLIPS,
              "seed": seed, "abstain_below": abstain_below if abstain_below is not None else "the bundles'",
              "smoothing_windows": span,
              "settings": how, "summary": summary, "folds": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    lines = [f"# Daemon replays: {target}", "",
             f"The {part} actors' spoken clips, {pool} pool, runs of {RUN_CLIPS} clips of one actor and emotion, through "
             f"the daemon ({how}) and each fold's bundle. Mean +- sd over folds.", "",
             "| condition | coverage (share of speech time with an emotion published) | wrong (share of that time) |",
             "|---|---|---|"]
    for name, s in summary.items():
        wrong = "-" if s["wrong"] is None else f"{s['wrong'][0]:.2f} +- {s['wrong'][1]:.2f}"
        lines.append(f"| {name} | {s['coverage'][0]:.2f} +- {s['coverage'][1]:.2f} | {wrong} |")
    (out / "replay.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: replay.json, replay.md", file=sys.stderr)
    return report
