"""Test-time options on finished cross-validations, without training anything (research/VARIANTS.md).

    python research/test_time.py CV_DIR [CV_DIR ...] --out OUT [--eval-hop SECONDS]

CV_DIR: `moodmic-train cv` or `members` folders of the same folds (several: their fold models' logits
averaged, e.g. two five-model recipes as one ten-model ensemble). Every fold's validation and test
clips are cut into windows as edge.predict does (at --eval-hop, default the runs' own) and scored
whole-file, per group (all, speech, song), under each option:

    as scored       the logits as they are (the fold runs' own figures when one CV_DIR is given)
    warp 3 / 5      the mean probability over copies of each window warped in frequency by
                    0.95, 1, 1.05 / 0.9, 0.95, 1, 1.05, 1.1 (trainer.augment.warp_bands)
    class bias      one additive logit per class, fitted on the fold's validation actors only
                    (class-balanced whole-file log-likelihood, L2 0.05), applied to its test actors

Writes OUT/test_time.json and OUT/test_time.md (validation and test UA, mean and spread over folds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge.audio import load_audio
from edge.features import FeatureParams, Frontend, file_windows, mel_edges_hz, stack
from trainer.augment import warp_bands
from trainer.corpus import load_corpus
from trainer.crossval import finished_folds, fold_dir, fold_number
from trainer.evaluate import groups, metrics
from trainer.model import load_keras_model, outputs_logits, raw_outputs, softmax
from trainer.rundir import read_servable_run
from trainer.settings import RunSettings
from trainer.splits import make_split

GROUPS = ("all", "speech", "song")
WARPS = {"as scored": (1.0,), "warp 3": (0.95, 1.0, 1.05), "warp 5": (0.9, 0.95, 1.0, 1.05, 1.1)}
BIAS_L2 = 0.05


def clip_probs(window_probs: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Each clip's probabilities: the mean of its windows' (edge.predict.predict_audio)."""
    out = np.zeros((n, window_probs.shape[1]))
    np.add.at(out, owner, window_probs)
    return out / np.bincount(owner, minlength=n)[:, None]


def fit_bias(logits: np.ndarray, owner: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-class logit offsets maximising the class-balanced log-likelihood of whole-file predictions."""
    from scipy.optimize import minimize

    weight = 1.0 / np.bincount(y, minlength=logits.shape[1])[y]

    def loss(b):
        p = clip_probs(softmax(logits + b), owner, len(y))[np.arange(len(y)), y]
        return -np.sum(weight * np.log(p + 1e-9)) / weight.sum() + BIAS_L2 * np.sum(b**2)

    return minimize(loss, np.zeros(logits.shape[1]), method="Powell").x


def fold_logits(cv_dirs: list[Path], k: int, hop_s: float | None) -> dict:
    """Each side's windows through every CV_DIR's fold-k model at every warp factor, logits averaged over CV_DIRs."""
    runs = [read_servable_run(fold_dir(cv, k)) for cv in cv_dirs]
    if any(r["split"] != runs[0]["split"] for r in runs):
        raise SystemExit(f"fold {k}: {', '.join(map(str, cv_dirs))} do not share their folds")
    run = runs[0]
    settings = RunSettings.from_dict(run["settings"])
    corpus = load_corpus(settings.data)
    split = make_split(corpus, settings.split, settings.seed)
    params = FeatureParams.from_dict(run["features"])
    frontend, band_hz = Frontend(params), mel_edges_hz(params)[1:-1]
    hop = params.hop_frames(hop_s or run["eval_hop_s"])
    models = [load_keras_model(fold_dir(cv, k) / r["keras_model"], compile=False) for cv, r in zip(cv_dirs, runs)]
    if not all(outputs_logits(m) for m in models):
        raise SystemExit(f"fold {k}: every model must output logits (a --logits recipe) to be averaged and offset")
    factors = sorted({f for fs in WARPS.values() for f in fs})
    out = {}
    for part in ("val", "test"):
        clips = split.clips(corpus, part)
        windows = [stack(file_windows(frontend, load_audio(c.path, params.sample_rate), hop)) for c in clips]
        x = np.concatenate(windows)
        logits = {f: np.mean([raw_outputs(m, x if f == 1.0 else warp_bands(x, np.full(len(x), f), band_hz), 512)
                              for m in models], axis=0) for f in factors}
        out[part] = {
            "logits": logits,
            "owner": np.repeat(np.arange(len(clips)), [len(w) for w in windows]),
            "y": np.array([run["labels"].index(c.label) for c in clips]),
            "clips": clips,
        }
    return out


def scores(side: dict, option: str, bias: np.ndarray) -> dict[str, float]:
    factors = WARPS.get(option, (1.0,))
    probs = np.mean([softmax(side["logits"][f] + bias) for f in factors], axis=0)
    pred = clip_probs(probs, side["owner"], len(side["y"])).argmax(axis=1)
    labels = tuple(range(probs.shape[1]))
    # the trainer's own UA and groups (trainer.evaluate), on label indices
    return {g: metrics(list(side["y"][idx]), list(pred[idx]), labels)["unweighted_accuracy"]
            for g, idx in groups(side["clips"]).items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cv_dirs", nargs="+", type=Path, metavar="CV_DIR")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--eval-hop", type=float, metavar="SECONDS", help="hop between windows (default: the runs' own)")
    args = p.parse_args(argv)
    folds = sorted(set.intersection(*({fold_number(d) for d in finished_folds(cv)} for cv in args.cv_dirs)))
    options = [*WARPS, "class bias"]
    per_fold = {o: [] for o in options}
    for k in folds:
        sides = fold_logits(args.cv_dirs, k, args.eval_hop)
        val = sides["val"]
        bias = {o: np.zeros(len(val["logits"][1.0][0])) for o in WARPS}
        bias["class bias"] = fit_bias(val["logits"][1.0], val["owner"], val["y"])
        for o in options:
            per_fold[o].append({part: scores(sides[part], o, bias[o]) for part in ("val", "test")})
        print(f"fold {k}: " + ", ".join(f"{o} test {per_fold[o][-1]['test']['all']:.3f}" for o in options), file=sys.stderr)
    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}

    summary = {o: {part: {g: spread([f[part][g] for f in rows]) for g in GROUPS if all(g in f[part] for f in rows)}
                   for part in ("val", "test")} for o, rows in per_fold.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"cv_dirs": [d.name for d in args.cv_dirs], "eval_hop_s": args.eval_hop, "folds": folds,
              "per_fold": per_fold, "summary": summary}
    (args.out / "test_time.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["| option | validation UA all / speech / song | test UA all | test UA speech | test UA song |",
             "|---|---|---|---|---|"]
    for o, s in summary.items():
        v, t = s["val"], s["test"]
        lines.append(f"| {o} | " + " / ".join(f"{v[g]['mean']:.3f}" if g in v else "-" for g in GROUPS) + " | "
                     + " | ".join(f"{t[g]['mean']:.3f} +- {t[g]['std']:.3f}" if g in t else "-" for g in GROUPS) + " |")
    (args.out / "test_time.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
