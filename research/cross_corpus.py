"""Cross-corpus check (issue [10], stage 2): a bundle trained on RAVDESS alone, scored on another corpus.

    python research/cross_corpus.py CORPUS_DIR [--model BUNDLE ...] --out OUT

CORPUS_DIR is a folder prepared by `python -m corpora.prepare` (manifest.csv + 16 kHz FLAC; URDU is the one
usable emotional corpus found, research use only, corpora/README.md). Every clip goes through
edge.predict.predict_file with no flags, as `moodmic predict` scores it. Two figures per bundle: UA over
all eight of its emotions (what the device would say), and UA restricted to the corpus's own classes
(the argmax over those labels only: the usual way to compare across label sets). With one other corpus
and no multi-corpus training, this stands in for the leave-one-corpus-out table: the held-out corpus is
every corpus but RAVDESS. OUT gets cross_corpus.json and cross_corpus.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from edge.model import EmotionModel
from edge.predict import predict_file
from trainer.evaluate import metrics


def score(model: EmotionModel, corpus: Path) -> dict:
    rows = list(csv.DictReader((corpus / "manifest.csv").open(encoding="utf-8")))
    own = sorted({r["emotion"] for r in rows})
    missing = [e for e in own if e not in model.labels]
    if missing:
        raise SystemExit(f"{corpus}: emotions {missing} are not among the model's labels {model.labels}")
    idx = [model.labels.index(e) for e in own]
    truth, free, restricted = [], [], []
    for r in rows:
        res = predict_file(model, corpus / r["path"])
        probs = np.array([res.probabilities[label] for label in model.labels])
        truth.append(r["emotion"])
        free.append(res.label)
        restricted.append(own[int(np.argmax(probs[idx]))])
    on_own = metrics(truth, restricted, tuple(own))  # the trainer's figures (UA = mean per-class recall)
    return {
        "clips": len(rows), "classes": own, "speakers": len({r["speaker"] for r in rows}),
        "ua_all_labels": round(metrics(truth, free, model.labels)["unweighted_accuracy"], 4),
        "ua_own_classes": round(on_own["unweighted_accuracy"], 4),
        "chance_own_classes": round(1 / len(own), 4),
        "called": dict(Counter(free).most_common()),
        "per_class_own": {c: round(r, 4) for c, r in on_own["per_class_recall"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--model", action="append", default=[], help="bundle folder (default: the shipped model)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    results = {}
    for bundle in args.model or [""]:
        model = EmotionModel.load(bundle or None)
        name = model.bundle.name
        results[name] = score(model, args.corpus)
        print(f"{name}: UA {results[name]['ua_own_classes']:.3f} over {args.corpus.name}'s classes, "
              f"{results[name]['ua_all_labels']:.3f} over all labels", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cross_corpus.json").write_text(json.dumps({"corpus": str(args.corpus), "results": results}, indent=1) + "\n")
    lines = [f"# Cross-corpus: RAVDESS-trained bundles on {args.corpus.name}", "",
             f"`python research/cross_corpus.py {args.corpus} --out {args.out}` (every clip through edge.predict, no flags).", "",
             "| bundle | clips | speakers | classes | UA, own classes (chance) | UA, all 8 labels | most called |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        top = ", ".join(f"{k} {v}" for k, v in list(r["called"].items())[:3])
        lines.append(f"| {name} | {r['clips']} | {r['speakers']} | {', '.join(r['classes'])} | {r['ua_own_classes']:.3f} "
                     f"({r['chance_own_classes']:.2f}) | {r['ua_all_labels']:.3f} | {top} |")
    (args.out / "cross_corpus.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
