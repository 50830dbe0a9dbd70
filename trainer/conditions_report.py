"""The outputs of `moodmic-train conditions` (trainer.conditions): conditions.json, conditions.md, conditions.png.

conditions.json (format_version 1):
    target, model, seed, clips_per_actor, labels, eval_hop_s, command, render_version
    noise           {where, synthetic, kinds: {kind: {pool: {recordings, sources, seconds}}}, ignored_kinds}
    rooms           {pool: [{index, size_m, talker_m, mic_m, distance_m, rt60_target_s, rt60_s, absorption}]}
    conditions      {name: {text, family, kind, snr_db}} for the conditions asked for
    not_measured    {name: {pool: why}}: kinds without real recordings in a pool (never substituted)
    folds           {fold: {validation_actors, test_actors, conditions: {name: {validation|test: {pool,
                    speech|song|all: {clips, accuracy, unweighted_accuracy, macro_f1, per_class_recall, confusion,
                    called: {label: share of clips}, mean_confidence, confident_share (>= the daemon's
                    min_confidence), gate_share (clips with a window the daemon's gate passes)}}}}}}
    summary         {name: {validation|test: {group: {unweighted_accuracy|accuracy|macro_f1: {mean, std, min, max},
                    clips, folds, mean_confidence, confident_share, gate_share, called}}}}: over folds
    timing          {scored_now, jobs, wall_s, render_ms_per_clip, score_ms_per_clip, full_run_renderings,
                     full_run_estimate_s (one process, at the measured cost per clip)}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.config import SmoothingSettings

from .corpus import Clip
from .evaluate import HEADLINE, groups, metrics
from .rooms import CONDITIONS
from .rundir import write_json

GROUPS = ("speech", "song", "all")
MIN_CONFIDENCE = SmoothingSettings().min_confidence


def group_metrics(clips: tuple[Clip, ...], rows: list[dict], labels: tuple[str, ...]) -> dict[str, dict]:
    """trainer.evaluate's metrics per group, plus what the model calls the clips and how sure it is."""
    out = {}
    for group, idx in groups(list(clips)).items():
        sub = [rows[i] for i in idx]
        m = metrics([r["label"] for r in sub], [r["predicted"] for r in sub], labels)
        conf = np.array([r["confidence"] for r in sub])
        m["called"] = {k: round(float(np.mean([r["predicted"] == k for r in sub])), 4) for k in labels}
        m["mean_confidence"] = round(float(conf.mean()), 4)
        m["confident_share"] = round(float(np.mean(conf >= MIN_CONFIDENCE)), 4)
        m["gate_share"] = round(float(np.mean([r["speech_windows"] > 0 for r in sub])), 4)
        out[group] = m
    return out


def _summary(per_fold: dict[str, dict], names: list[str], labels: tuple[str, ...]) -> dict:
    from .crossval import fold_stats

    out: dict[str, Any] = {}
    for n in names:
        for part in ("validation", "test"):
            for g in GROUPS:
                ms = [f["conditions"][n][part][g] for f in per_fold.values()
                      if part in f["conditions"].get(n, {}) and g in f["conditions"][n][part]]
                if not ms:
                    continue
                s = {k: fold_stats([m[k] for m in ms]) for k in HEADLINE}
                s.update(clips=sum(m["clips"] for m in ms), folds=len(ms),
                         **{k: round(float(np.mean([m[k] for m in ms])), 4)
                            for k in ("mean_confidence", "confident_share", "gate_share")},
                         called={k: round(float(np.mean([m["called"][k] for m in ms])), 4) for k in labels})
                out.setdefault(n, {}).setdefault(part, {})[g] = s
    return out


def report(out: Path, meta: dict, clips: dict[str, dict[str, tuple[Clip, ...]]], names: list[str],
           skipped: dict[str, dict[str, str]], results: dict[str, dict[tuple[str, str], dict]],
           full_renderings: int) -> dict:
    labels = tuple(meta["labels"])
    per_fold = {}
    for fold, parts in clips.items():
        actors = {p: sorted({c.speaker for c in cs}) for p, cs in parts.items()}
        conds: dict[str, dict] = {}
        for (part, n), res in sorted(results[fold].items()):
            conds.setdefault(n, {})[part] = {"pool": res["pool"], **group_metrics(parts[part], res["clips"], labels)}
        per_fold[fold] = {"validation_actors": actors.get("validation", []), "test_actors": actors.get("test", []),
                          "conditions": {n: conds[n] for n in names if n in conds}}
    done = [r for by in results.values() for r in by.values()]
    n_clips = sum(len(r["clips"]) for r in done) or 1
    render_ms, score_ms = (1000 * sum(r[k] for r in done) / n_clips for k in ("render_s", "score_s"))
    meta["timing"].update(render_ms_per_clip=round(render_ms, 2), score_ms_per_clip=round(score_ms, 2),
                          full_run_renderings=full_renderings,
                          full_run_estimate_s=round(full_renderings * (render_ms + score_ms) / 1000))
    data = {**meta, "conditions": {n: {"text": CONDITIONS[n].text, "family": CONDITIONS[n].family,
                                       "kind": CONDITIONS[n].kind, "snr_db": CONDITIONS[n].snr_db} for n in names},
            "not_measured": {n: why for n, why in skipped.items() if why}, "folds": per_fold,
            "summary": _summary(per_fold, names, labels)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "conditions.json", data)
    (out / "conditions.md").write_text(markdown(data), encoding="utf-8")
    plot(data, out / "conditions.png")
    return data


def _ms(s: dict | None, key: str = "unweighted_accuracy") -> str:
    return f"{s[key]['mean']:.3f} ± {s[key]['std']:.3f}" if s else "—"


def _called(s: dict) -> str:
    label, share = max(s["called"].items(), key=lambda kv: kv[1])
    return f"{label} {share:.2f}"


def markdown(d: dict) -> str:
    synthetic = d["noise"]["synthetic"]
    name = lambda n: f"{n} (synthetic noise)" if synthetic and (CONDITIONS[n].kind or n == "room") else n  # noqa: E731
    lines = [f"# Conditions: {d['target']}", ""]
    if synthetic:
        lines += ["**SYNTHETIC NOISE**: the noise conditions below use seeded stand-ins (--synthetic-noise), not "
                  "recordings; they test the instrument and are no measurement of rooms.", ""]
    lines += [f"Model: {d['model']}. Whole files through edge.predict.predict_audio (windows every {d['eval_hop_s']} s). "
              f"Seed {d['seed']}; clips per actor: {d['clips_per_actor'] or 'all'}. Validation actors are rendered with the "
              "validation pool's noise and rooms, test actors with the evaluation pool's: choose on validation, "
              "report test. UA: unweighted accuracy (mean ± sd over folds); chance 1/" + str(len(d["labels"])) + ".", "",
              "| fold | validation actors | test actors |", "|---|---|---|"]
    lines += [f"| {f} | {', '.join(v['validation_actors']) or '—'} | {', '.join(v['test_actors'])} |"
              for f, v in d["folds"].items()]
    lines += ["", f"Noise: {d['noise']['where']}", "", "| kind | " + " | ".join(
        ("train", "validation", "evaluation")) + " |", "|---|---|---|---|"]
    for kind, pools in d["noise"]["kinds"].items():
        lines.append(f"| {kind} | " + " | ".join(
            f"{p['recordings']} files, {p['sources']} sources, {p['seconds'] / 60:.1f} min" if (p := pools.get(pool)) else "none"
            for pool in ("train", "validation", "evaluation")) + " |")
    if d["not_measured"]:
        lines += ["", "Not measured (no real recordings; never substituted):", ""]
        lines += [f"- {n} on the {pool} pool: {why}" for n, by in d["not_measured"].items() for pool, why in by.items()]
    lines += ["", "## Unweighted accuracy per condition", "",
              "| condition | val speech | val all | test speech | test song | test all | test: most called "
              f"| test: clips with confidence ≥ {MIN_CONFIDENCE} |", "|---|---|---|---|---|---|---|---|"]
    for n in d["conditions"]:
        s = d["summary"].get(n, {})
        v, t = s.get("validation", {}), s.get("test", {})
        lines.append(f"| {name(n)} | {_ms(v.get('speech'))} | {_ms(v.get('all'))} | {_ms(t.get('speech'))} | "
                     f"{_ms(t.get('song'))} | {_ms(t.get('all'))} | {_called(t['all']) if t else '—'} | "
                     + (f"{t['all']['confident_share']:.2f}" if t else "—") + " |")
    lines += ["", "## Per condition", ""]
    for n, c in d["conditions"].items():
        lines += [f"### {name(n)}: {c['text']}", "",
                  "| part (pool) | group | clips | UA | accuracy | macro-F1 | most called | mean confidence | gate passes |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for part, pool in (("validation", "validation"), ("test", "evaluation")):
            for g, s in d["summary"].get(n, {}).get(part, {}).items():
                lines.append(f"| {part} ({pool}) | {g} | {s['clips']} | {_ms(s)} | {_ms(s, 'accuracy')} | "
                             f"{_ms(s, 'macro_f1')} | {_called(s)} | {s['mean_confidence']:.2f} | {s['gate_share']:.2f} |")
        lines.append("")
    t = d["timing"]
    lines += [f"Timing: {t['scored_now']} fold-part-conditions scored in this call in {t['wall_s']} s with {t['jobs']} "
              f"process(es); render {t['render_ms_per_clip']} ms + score {t['score_ms_per_clip']} ms per clip; every "
              f"clip of these folds under every condition ({t['full_run_renderings']} renderings) would take about "
              f"{t['full_run_estimate_s'] / 60:.0f} min in one process.", "", f"Command: `{d['command']}`", ""]
    return "\n".join(lines)


def plot(d: dict, path: Path) -> None:
    from .report import _pyplot

    plt = _pyplot()
    names = list(d["conditions"])
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.55 * len(names) + 2), 8), sharex=True)
    x = np.arange(len(names))
    for ax, g in zip(axes, ("speech", "all")):
        for shift, part, color in ((-0.2, "validation", "tab:blue"), (0.2, "test", "tab:orange")):
            s = [d["summary"].get(n, {}).get(part, {}).get(g) for n in names]
            mean = [v["unweighted_accuracy"]["mean"] if v else np.nan for v in s]
            std = [v["unweighted_accuracy"]["std"] if v else 0.0 for v in s]
            pool = "validation" if part == "validation" else "evaluation"
            ax.bar(x + shift, mean, 0.4, yerr=std, color=color, capsize=2, label=f"{part} actors, {pool} pool")
        ax.axhline(1 / len(d["labels"]), color="grey", ls="--", lw=1, label="chance")
        ax.set(ylabel=f"UA, {g} clips", ylim=(0, 1))
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_title(("SYNTHETIC NOISE (instrument test) - " if d["noise"]["synthetic"] else "")
                      + f"{Path(d['target']).name}: unweighted accuracy per condition (mean ± sd over folds)", fontsize=10)
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
