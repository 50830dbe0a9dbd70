"""Human-readable outputs of a run: training curves, confusion matrices, classification report, model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.schema import FileResult

from .corpus import Clip
from .evaluate import HEADLINE, groups


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows: list[dict], path: Path) -> None:
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [r[key] for r in rows], label="train (random crops, augmented)")
        if all("val_" + key in r for r in rows):  # split `all` has no validation
            ax.plot(epochs, [r["val_" + key] for r in rows], label="validation (windows at the evaluation hop)")
        ax.set(xlabel="epoch", title=key)
        ax.legend(fontsize=8)
    axes[2].semilogy(epochs, [r["lr"] for r in rows])
    axes[2].set(xlabel="epoch", title="learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], labels: tuple[str, ...], path: Path, title: str) -> None:
    """Counts and row-normalised (recall) side by side; rows are true labels."""
    plt = _pyplot()
    counts = np.array(confusion)
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    for ax, values, what, fmt in ((axes[0], counts, "counts", "d"), (axes[1], norm, "row-normalised (recall)", ".2f")):
        ax.imshow(values, cmap="Blues")
        ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=f"{title}: {what}")
        ax.set_xticklabels(labels, rotation=45, ha="right")
        ax.set_yticklabels(labels)
        top = values.max() or 1
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def classification_text(parts: dict[str, tuple[list[Clip], list[FileResult]]], labels: tuple[str, ...]) -> str:
    """sklearn's classification report for every part and group (all, speech, song)."""
    from sklearn.metrics import classification_report

    out = []
    for part, (clips, results) in parts.items():
        for name, idx in groups(clips).items():
            y_true = [clips[i].label for i in idx]
            present = [label for label in labels if label in set(y_true)]
            report = classification_report(y_true, [results[i].label for i in idx], labels=present, digits=3, zero_division=0)
            actors = ", ".join(sorted({clips[i].speaker for i in idx}))
            out.append(f"== {part}: {name} ({len(idx)} clips, actors {actors})\n{report}")
    return "\n".join(out)


def metrics_table(by_group: dict[str, dict]) -> str:
    lines = ["| clips | n | accuracy | unweighted acc. | macro-F1 |", "|---|---|---|---|---|"]
    for name, m in by_group.items():
        lines.append(f"| {name} | {m['clips']} | " + " | ".join(f"{m[k]:.3f}" for k in HEADLINE) + " |")
    return "\n".join(lines)


def model_card(run: dict) -> str:
    """A short markdown card: what was trained on what, and how it scored on whom."""
    split, test = run["split"], run["metrics"]["test"]
    if not test:
        return _card_without_test(run)
    recall = ", ".join(f"{k} {v:.2f}" for k, v in test["all"]["per_class_recall"].items())
    sides = "\n".join(
        f"- {part}: {split[part]['clips']} clips, actors {', '.join(split[part]['actors'])}" for part in ("train", "val", "test")
    )
    kind = ("speaker-independent (by actor)" if split["kind"] == "actor"
            else "clip-level stratified (speakers shared: NOT speaker-independent)")
    t = run["training"]
    return f"""# moodmic model card: {run['name']}

{_what(run)}
- Split: {kind}, fold {split['fold']} of {split['folds']}, seed {run['seed']}.
{sides}
- Training: {t['epochs_run']} epochs (best {t['best_epoch']}, early stop: {t['stopped_early']}), \
{t['seconds_per_epoch']:.1f} s per epoch.

## Test ({split['test']['clips']} clips; whole files via edge.predict.predict_audio, hop {run['eval_hop_s']} s)

{metrics_table(test)}

Per-class recall (all test clips): {recall}.

Command: `{run['command'][-1]}`
"""


def _what(run: dict) -> str:
    """The lines both cards open with: architecture, input, data."""
    f, data = run["features"], run["data"]
    return (f"- Architecture `{run['arch']}`, {run['parameters']:,} parameters; labels in output order: "
            f"{', '.join(run['labels'])}.\n"
            f"- Input: log-mel (time {f['n_frames']} x mel {f['n_mels']}) from edge.features "
            f"(feature version {f['feature_version']}).\n"
            f"- Data: {data['path']} ({data['source']}, {data['clips']} clips).")


def _card_without_test(run: dict) -> str:
    """The card of a run trained on every clip (split `all`): what it was trained on, nothing scored."""
    split = run["split"]
    t = run["training"]
    return f"""# moodmic model card: {run['name']}

{_what(run)}
- Split: all clips train ({split['train']['clips']} clips, actors {', '.join(split['train']['actors'])}); no validation or
  test side, so this run has no held-out figures: its recipe's cross-validation is the measure.
- Training: {t['epochs_run']} epochs (fixed, last epoch kept), {t['seconds_per_epoch']:.1f} s per epoch.

Command: `{run['command'][-1]}`
"""
