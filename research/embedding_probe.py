"""Does a small pretrained speech embedding add to the recipe's fold ensembles? (research/VARIANTS.md)

    python research/embedding_probe.py MEMBERS_DIR --models OWW_MODELS --out OUT [--refit REFIT_MEMBERS]
        [--windows HOP_S] [--gain-db DB]

The embedding: Google's speech_embedding (trained for keyword spotting on a large multi-speaker
corpus; 1.3 MB, 96 values every 80 ms from 775 ms of 32-band mel), as the openWakeWord 0.4.0 wheel
bundles it with its mel front end (`OWW_MODELS`: that wheel's openwakeword/resources/models; get it
with `pip download --no-deps openwakeword==0.4.0` and unzip it; run with `pip install onnxruntime`).
Nothing here is trained by moodmic-train and nothing ships: it is a probe of whether the embedding
carries emotion the recipe's log-mel CNN misses.

Features: the embedding sequence pooled to its mean and standard deviation (192 values), and the
same pooling of moodmic's own log-mel frames (256; unlike the CNN's band mean, it keeps the
recording level), over each whole clip, or with --windows over each device window (2.6 s every
HOP_S seconds, edge.features.file_windows; each window embedded from its own audio, as a device
would). Per fold of MEMBERS_DIR (a `moodmic-train members` folder; its folds, sides and clip
probabilities), a logistic regression (standardised inputs, L2 strength C) is fitted on the fold's
training actors' clips (or windows), then scored alone and fused with the fold's ensemble: log p =
(1 - w) log p_ensemble + w log p_probe, the probe's probabilities averaged over a clip's windows
(as edge.predict averages the ensemble's). Every setting (inputs, C, w) is scored on the validation
actors, where one would be chosen, and on the test actors, which are reported only. With --refit
(the `members` folder of the same folds' refits), the setting best on validation is also scored as
the recipe's CV figure is: each refitted ensemble fused with a probe fitted on the same 16 actors,
on the test actors. With --gain-db, that setting is scored again on every clip scaled by DB (a
quieter or louder microphone; pooled log-mel keeps the level), the probe still trained at the
corpus level. Writes OUT/embedding_probe.json and OUT/embedding_probe.md; the features are
cached in OUT/features.npz (with it there, --models is not needed).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from clip_probe import pooled  # research/, first on sys.path when run as a script

from edge.audio import load_audio
from edge.features import FeatureParams, Frontend, file_windows
from trainer.corpus import Corpus, load_corpus
from trainer.crossval import finished_folds, fold_number, fold_stats
from trainer.evaluate import metrics

GROUPS = ("all", "speech", "song")
INPUTS = {"embedding": ("embedding",), "log-mel": ("log-mel",), "embedding + log-mel": ("embedding", "log-mel")}
CS = (0.01, 0.1)
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0)  # 1.0: the probe alone
EMBED_WINDOW, EMBED_STEP = 76, 8  # mel frames per embedding and between embeddings (openWakeWord's)


def embedder(models: Path):
    """clip audio (16 kHz float) -> (n, 96) embeddings, through the wheel's two ONNX models as openWakeWord runs them."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    mel = ort.InferenceSession(str(models / "melspectrogram.onnx"), opts, providers=["CPUExecutionProvider"])
    emb = ort.InferenceSession(str(models / "embedding_model.onnx"), opts, providers=["CPUExecutionProvider"])

    def embed(audio: np.ndarray) -> np.ndarray:
        pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.float32)[None]  # int16 scale, as it expects
        spec = np.squeeze(mel.run(None, {"input": pcm})[0]) / 10 + 2  # openWakeWord's transform
        starts = range(0, len(spec) - EMBED_WINDOW + 1, EMBED_STEP)
        windows = np.stack([spec[i : i + EMBED_WINDOW] for i in starts])[..., None].astype(np.float32)
        return emb.run(None, {"input_1": windows})[0].reshape(len(windows), -1)

    return embed


def clip_features(corpus: Corpus, params: FeatureParams, models: Path | None, cache: Path,
                  hop_s: float | None = None, gain_db: float = 0.0) -> dict[str, dict[str, np.ndarray]]:
    """{clip name: {"embedding": (n, 192), "log-mel": (n, 256)}} for every usable clip of the corpus:
    one row pooled over the whole clip, or with `hop_s` one row per device window (2.6 s every hop_s,
    edge.features.file_windows), each embedded from that window's audio alone; `gain_db`: every clip
    scaled by that gain first."""
    pooling = ("clip" if hop_s is None else f"window {hop_s}") + (f", gain {gain_db:+g} dB" if gain_db else "")
    if cache.is_file():
        z = np.load(cache)
        if "pooling" in z and str(z["pooling"]) != pooling:
            raise SystemExit(f"{cache} holds features pooled per {z['pooling']}, not per {pooling}: use another --out")
        out: dict[str, dict[str, list]] = {}
        for name, e, m in zip(z["names"], z["embedding"], z["log_mel"]):
            out.setdefault(name, {"embedding": [], "log-mel": []})
            out[name]["embedding"].append(e)
            out[name]["log-mel"].append(m)
        return {name: {k: np.array(v) for k, v in f.items()} for name, f in out.items()}
    if models is None:
        raise SystemExit(f"no {cache}: pass --models (openWakeWord 0.4.0's resources/models folder) to compute it")
    frontend, embed = Frontend(params), embedder(models)
    names, emb, mel = [], [], []
    for i, clip in enumerate(corpus.usable):
        audio = load_audio(clip.path, params.sample_rate) * np.float32(10 ** (gain_db / 20))
        if hop_s is None:
            parts = [(audio, frontend.frames(audio)[0])]
        else:
            windows = file_windows(frontend, audio, params.hop_frames(hop_s))
            padded = np.concatenate([audio, np.zeros(max(0, params.window_samples - len(audio)), np.float32)])
            parts = [(padded[w.start_frame * params.hop_length :][: params.window_samples], w.features) for w in windows]
        for samples, log_mel in parts:
            names.append(clip.name)
            emb.append(pooled(embed(samples)))
            mel.append(pooled(log_mel))
        if i % 250 == 0:
            print(f"features {i}/{len(corpus.usable)}", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), embedding=np.array(emb), log_mel=np.array(mel), pooling=np.array(pooling))
    return clip_features(corpus, params, models, cache, hop_s, gain_db)


def fold_rows(fold: Path, corpus: Corpus, features: dict, inputs: str, c: float,
              scored: dict | None = None) -> dict[str, list[tuple]]:
    """{side: [(true, channel, ensemble probabilities, probe probabilities)]} of one fold; the probe
    fitted on `features`, its scored clips' features from `scored` (default: the same)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    run = json.loads((fold / "run.json").read_text())
    labels = run["labels"]

    def x(name, source=features):  # (rows, inputs): one row per clip or per window
        return np.concatenate([source[name][part] for part in INPUTS[inputs]], axis=1)

    train = [c for c in corpus.usable if c.speaker in run["split"]["train"]["actors"]]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    probe.fit(np.concatenate([x(c.name) for c in train]),
              np.concatenate([[labels.index(c.label)] * len(features[c.name]["embedding"]) for c in train]))
    rows: dict[str, list[tuple]] = {"val": [], "test": []}
    with open(fold / "predictions.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            name = Path(r["path"]).resolve().relative_to(corpus.root).as_posix()
            p_probe = np.zeros(len(labels))
            p_probe[probe.classes_] = probe.predict_proba(x(name, scored or features)).mean(0)  # windows averaged
            p_ens = np.array([float(r[label]) for label in labels])
            rows[r["part"]].append((labels.index(r["label"]), r["vocal_channel"], p_ens, p_probe))
    return rows


def fused_ua(rows: list[tuple], w: float, group: str) -> float:
    """Unweighted accuracy (trainer.evaluate's) of the fused predictions of one group's clips."""
    sel = [r for r in rows if group == "all" or r[1] == group]
    y = [r[0] for r in sel]
    p = [int(np.argmax((1 - w) * np.log(r[2] + 1e-6) + w * np.log(r[3] + 1e-6))) for r in sel]
    return metrics(y, p, tuple(range(len(sel[0][2]))))["unweighted_accuracy"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("members", type=Path, help="a moodmic-train members folder (every fold finished)")
    ap.add_argument("--models", type=Path, help="openWakeWord 0.4.0's resources/models folder")
    ap.add_argument("--refit", type=Path, help="a members folder of the same folds' refits: the chosen setting's CV figure")
    ap.add_argument("--windows", type=float, metavar="HOP_S",
                    help="pool per device window (2.6 s every HOP_S seconds, each embedded alone), not per clip")
    ap.add_argument("--gain-db", type=float, metavar="DB",
                    help="also score the setting chosen on validation with every scored clip scaled by DB (probe "
                         "trained at the corpus level; the ensemble's probabilities as they are)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    folds = finished_folds(a.members)
    run = json.loads((folds[0] / "run.json").read_text())
    corpus, params = load_corpus(run["settings"]["data"]), FeatureParams.from_dict(run["features"])
    features = clip_features(corpus, params, a.models, a.out / "features.npz", a.windows)
    table = []
    for inputs in INPUTS:
        for c in CS:
            per_fold = [fold_rows(fold, corpus, features, inputs, c) for fold in folds]
            for w in WEIGHTS:
                row = {"inputs": inputs, "C": c, "w": w}
                for side in ("val", "test"):
                    row[side] = {g: fold_stats([fused_ua(rows[side], w, g) for rows in per_fold]) for g in GROUPS}
                table.append(row)
                print(inputs, c, w, {s: [round(row[s][g]["mean"], 3) for g in GROUPS] for s in ("val", "test")}, flush=True)
    best = max((r for r in table if r["w"] < 1.0), key=lambda r: r["val"]["all"]["mean"])
    summary = {"members": str(a.members), "folds": [fold_number(f) for f in folds], "pooled": (
               f"per window, a window every {a.windows} s" if a.windows else "per clip"), "rows": table,
               "chosen_on_validation_all": best}
    if a.refit:
        refits = [fold_rows(fold, corpus, features, best["inputs"], best["C"]) for fold in finished_folds(a.refit)]
        summary["refit"] = {"members": str(a.refit), **{
            label: {g: fold_stats([fused_ua(rows["test"], w, g) for rows in refits]) for g in GROUPS}
            for label, w in (("ensemble", 0.0), ("fused", best["w"]))}}
    if a.gain_db:
        gained = clip_features(corpus, params, a.models, a.out / f"features-gain{a.gain_db:+g}dB.npz", a.windows, a.gain_db)
        per_fold = [fold_rows(fold, corpus, features, best["inputs"], best["C"], gained) for fold in folds]
        alone = next(r for r in table if (r["inputs"], r["C"], r["w"]) == (best["inputs"], best["C"], 1.0))
        summary["gain"] = {
            "0 dB": {what: {side: r[side] for side in ("val", "test")} for what, r in (("probe", alone), ("fused", best))},
            f"{a.gain_db:+g} dB": {
                what: {side: {g: fold_stats([fused_ua(rows[side], w, g) for rows in per_fold]) for g in GROUPS}
                       for side in ("val", "test")}
                for what, w in (("probe", 1.0), ("fused", best["w"]))}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "embedding_probe.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    lines = ["# Speech-embedding probe (research/embedding_probe.py)", "",
             f"Fold ensembles: `{a.members}`; features pooled {summary['pooled']}; UA means over folds "
             f"{summary['folds']}. w = 0: the ensemble alone; "
             "w = 1: the probe alone. Choose on validation; test is reported only.", "",
             "| inputs | C | w | validation UA all / speech / song | test UA all / speech / song |", "|---|---|---|---|---|"]
    for r in table:
        v, t = (" / ".join(f"{r[s][g]['mean']:.3f}" for g in GROUPS) for s in ("val", "test"))
        lines.append(f"| {r['inputs']} | {r['C']} | {r['w']} | {v} | {t} |")
    lines += ["", f"Best fusion on validation UA (all): {best['inputs']}, C {best['C']}, w {best['w']}."]
    if a.refit:
        lines += ["", f"Refitted ensembles (`{a.refit}`), test actors, UA all / speech / song (mean +- sd over folds):", ""]
        lines += [f"- {label}: " + " / ".join(f"{r[g]['mean']:.3f} +- {r[g]['std']:.3f}" for g in GROUPS)
                  for label, r in summary["refit"].items() if label != "members"]
    if a.gain_db:
        lines += ["", "Scored clips at another level (the chosen setting; the ensemble's probabilities unchanged), "
                  "UA all / speech / song, validation | test:", ""]
        lines += [f"- {what} at {label}: " + " | ".join(" / ".join(f"{r[side][g]['mean']:.3f}" for g in GROUPS)
                                                       for side in ("val", "test"))
                  for label, by in summary["gain"].items() for what, r in by.items()]
    (a.out / "embedding_probe.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
