"""`moodmic-train conditions RUN_OR_CV_DIR --noise DIR --out OUT`: how a model holds up in rooms, noise and far field.

For each fold (a `cv`, `refit` or `members` folder's finished fold-K runs, or one run), its
validation actors are rendered under the validation pool's conditions and its test actors under the
evaluation pool's (trainer.rooms defines every condition; trainer.noisebank the noise pools), and
every rendering is scored as a whole file through edge.predict.predict_audio at the run's evaluation
hop (sliding windows, as every accuracy figure), by the fold's Keras model or, with `--bundles DIR`,
by its converted bundle (DIR/fold-K[/bundle], run by edge.model.EmotionModel as on the device).
Variants are chosen on the validation figures; the test figures are reported only.

A condition whose noise kind has no real recordings in a pool is not measured, and the report says
so; `--synthetic-noise` uses seeded stand-ins instead, labelled `synthetic` wherever they appear.
Resumable: each fold's part and condition is cached under OUT/cache/ with a key of everything that
decides it (renderings, clips, model file), so a killed run continues and a changed one recomputes.
Rooms are made once per pool and kept in OUT/rooms/. OUT gets conditions.json, conditions.md and
conditions.png (trainer.conditions_report).
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edge.audio import load_audio
from edge.bundle import META_FILE, sha256_file
from edge.errors import MissingInputError, UsageError

from .corpus import Clip, load_corpus
from .noisebank import NoiseBank, stable_seed
from .rooms import CONDITIONS, RENDER_VERSION, Renderer, RoomBank
from .rundir import RUN_FILE, read_servable_run, write_json

FORMAT_VERSION = 1
RESULT_FILE = "conditions.json"
PARTS = {"validation": ("val", "validation"), "test": ("test", "evaluation")}  # part: (run split, pool)


@dataclass(frozen=True)
class Job:
    """One fold's part under the conditions still to score (picklable: a worker process runs it)."""

    fold: str
    run_dir: Path
    part: str
    clips: tuple[Clip, ...]
    todo: tuple[tuple[str, str], ...]  # (condition, cache key)
    cache: Path
    seed: int
    noise_dirs: tuple[str, ...]
    synthetic: bool
    rooms: Path
    bundle: Path | None


def pick_conditions(names: str | None) -> list[str]:
    """Condition names from a comma-separated list of names or patterns (noise-voices-*); all by default."""
    if not names:
        return list(CONDITIONS)
    picked = []
    for pattern in (n.strip() for n in names.split(",") if n.strip()):
        hits = [c for c in CONDITIONS if fnmatch.fnmatchcase(c, pattern)]
        if not hits:
            raise UsageError(f"--conditions: {pattern!r} names no condition; choose from {', '.join(CONDITIONS)}")
        picked += [h for h in hits if h not in picked]
    return [c for c in CONDITIONS if c in picked]


def find_folds(target: Path) -> list[Path]:
    if (target / RUN_FILE).is_file():
        return [target]
    from .crossval import finished_folds

    folds = finished_folds(target) if target.is_dir() else []
    if not folds:
        raise MissingInputError(f"{target}: neither a finished run ({RUN_FILE}) nor a folder of finished fold-K runs; "
                                "give a moodmic-train train, cv, refit or members output")
    return folds


def fold_clips(run_dir: Path, moved: dict[str, Path] | None, clips_per_actor: int | None,
               seed: int) -> dict[str, tuple[Clip, ...]]:
    """The run's validation and test clips (its manifest.csv); with `moved` (sha256: path, from --data), found there."""
    with open(run_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    data = moved is not None
    out = {}
    for part, (split, _) in PARTS.items():
        clips = []
        for r in (r for r in rows if r["split"] == split):
            path = moved.get(r["sha256"], Path(r["path"])) if data else Path(r["path"])
            if not path.is_file():
                raise MissingInputError(f"{run_dir}: its clip {r['path']} is not there" + (" nor in --data" if data else "")
                                        + "; pass --data with the corpus the run was trained on")
            clips.append(Clip(path, Path(r["path"]).name, r["label"], r["speaker"], r["sex"], r["vocal_channel"], r["sha256"]))
        if clips_per_actor:
            clips = _per_actor(clips, clips_per_actor, seed)
        if clips:
            out[part] = tuple(clips)
    return out


def _scored_rows(run_dir: Path) -> int:
    with open(run_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        return sum(r["split"] in ("val", "test") for r in csv.DictReader(f))


def _per_actor(clips: list[Clip], n: int, seed: int) -> list[Clip]:
    out = []
    for actor in sorted({c.speaker for c in clips}):
        mine = sorted((c for c in clips if c.speaker == actor), key=lambda c: c.name)
        keep = np.random.default_rng(stable_seed(seed, "clips", actor)).choice(len(mine), min(n, len(mine)), replace=False)
        out += [mine[i] for i in sorted(keep)]
    return out


def bundle_dir(bundles: Path, run_dir: Path, single: bool) -> Path:
    for d in (bundles / run_dir.name / "bundle", bundles / run_dir.name, *((bundles,) if single else ())):
        if (d / META_FILE).is_file():
            return d
    raise MissingInputError(f"--bundles {bundles}: no converted bundle for {run_dir.name} "
                            f"({bundles / run_dir.name}/bundle/{META_FILE}); convert it (trainer/recipe/converted_cv.py)")


def _model_file(run_dir: Path, bundle: Path | None) -> Path:
    return bundle / "model.tflite" if bundle else run_dir / read_servable_run(run_dir)["keras_model"]


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def cache_path(cache: Path, fold: str, part: str, condition: str) -> Path:
    return cache / fold / part / f"{condition}.json"


def read_cached(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if data.get("key") == key else None


@lru_cache(maxsize=1)  # a fold's validation and test parts are consecutive jobs
def _load_model(run_dir: Path, bundle: Path | None):
    """(frontend, hop frames, infer, labels) of the fold's Keras model or converted bundle."""
    run = read_servable_run(run_dir)
    if bundle:
        from edge.model import EmotionModel

        model = EmotionModel.load(bundle)
        if list(model.labels) != run["labels"] or model.bundle.features.to_dict() != run["features"]:
            raise UsageError(f"{bundle}: its labels or features differ from {run_dir}'s; convert that run")
        return model.frontend, model.bundle.eval_hop_frames, model.probabilities, model.labels
    from edge.features import FeatureParams, Frontend

    from .model import batched_infer, load_keras_model

    params = FeatureParams.from_dict(run["features"])
    infer = batched_infer(load_keras_model(run_dir / run["keras_model"], compile=False))
    return Frontend(params), params.hop_frames(run["eval_hop_s"]), infer, tuple(run["labels"])


@lru_cache(maxsize=1)
def _renderer(noise_dirs: tuple[str, ...], synthetic: bool, seed: int, sr: int, rooms: Path) -> Renderer:
    noise = NoiseBank.synthetic_bank(seed, sr) if synthetic else NoiseBank.from_dirs(list(noise_dirs), sr)
    return Renderer(noise, RoomBank(seed, sr, rooms), seed, sr)


BATCH_CLIPS = 64  # clips whose windows go through a Keras model in one call


def predict_many(audios: list[np.ndarray], frontend, hop: int, infer, labels: tuple[str, ...], paths: list[str],
                 batched: bool) -> list:
    """edge.predict.predict_audio for each clip; `batched`: the model runs once over every clip's windows
    (a Keras call costs ~15 ms however few windows it gets; predict_audio then only looks the rows up)."""
    from edge.features import file_windows, stack
    from edge.predict import predict_audio

    if not batched:
        return [predict_audio(x, frontend, hop, infer, labels, p) for x, p in zip(audios, paths)]
    windows = [stack(file_windows(frontend, x, hop)) for x in audios]
    probs = np.split(infer(np.concatenate(windows)), np.cumsum([len(w) for w in windows])[:-1])

    def lookup(p: np.ndarray):
        def infer_rows(x: np.ndarray) -> np.ndarray:
            assert len(x) == len(p), "the clip's windows changed between the batch and predict_audio"
            return p
        return infer_rows

    return [predict_audio(x, frontend, hop, lookup(p), labels, path) for x, p, path in zip(audios, probs, paths)]


def score_job(job: Job) -> list[dict]:
    """Render and score the job's clips under each condition still to do; cache each condition's rows."""
    frontend, hop, infer, labels = _load_model(job.run_dir, job.bundle)
    sr = frontend.params.sample_rate
    renderer = _renderer(job.noise_dirs, job.synthetic, job.seed, sr, job.rooms)
    pool = PARTS[job.part][1]
    clean = [load_audio(c.path, sr) for c in job.clips]
    done = []
    for i, (name, key) in enumerate(job.todo, start=1):
        rows, render_s, score_s = [], 0.0, 0.0
        for at in range(0, len(job.clips), BATCH_CLIPS):
            clips = job.clips[at:at + BATCH_CLIPS]
            t0 = time.perf_counter()
            rendered = [renderer.render(x, CONDITIONS[name], pool, c.sha256 or c.name) for c, x in
                        zip(clips, clean[at:at + BATCH_CLIPS])]
            t1 = time.perf_counter()
            results = predict_many([x for x, _ in rendered], frontend, hop, infer, labels, [str(c.path) for c in clips],
                                   batched=job.bundle is None)
            score_s += time.perf_counter() - t1
            render_s += t1 - t0
            rows += [{"clip": c.name, "speaker": c.speaker, "channel": c.channel, "label": c.label, "predicted": r.label,
                      "confidence": round(r.confidence, 4), "probabilities": [round(r.probabilities[k], 4) for k in labels],
                      "windows": r.windows, "speech_windows": r.speech_windows, "render": info}
                     for c, r, (_, info) in zip(clips, results, rendered)]
        result = {"key": key, "fold": job.fold, "part": job.part, "pool": pool, "condition": name, "labels": list(labels),
                  "render_s": round(render_s, 3), "score_s": round(score_s, 3), "clips": rows}
        path = cache_path(job.cache, job.fold, job.part, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result)
        correct = np.mean([r["label"] == r["predicted"] for r in rows])
        print(f"[{job.fold} {job.part} {i}/{len(job.todo)}] {name} ({pool} pool): {len(rows)} clips, render "
              f"{1000 * render_s / len(rows):.1f} ms + score {1000 * score_s / len(rows):.1f} ms per clip, "
              f"accuracy {correct:.3f}", file=sys.stderr, flush=True)
        done.append(result)
    return done


def _worker_init() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"  # one process per core: each keeps to its own


def measure_conditions(target: str | Path, noise_dirs: list[str], out: str | Path | None = None,
                       data: str | Path | None = None, conditions: str | None = None, clips_per_actor: int | None = None,
                       seed: int = 0, synthetic_noise: bool = False, bundles: str | Path | None = None, jobs: int = 1,
                       argv: list[str] | None = None) -> dict[str, Any]:
    target = Path(target)
    if synthetic_noise and noise_dirs:
        raise UsageError("--synthetic-noise replaces real noise; give it or --noise, not both")
    if jobs < 1 or (clips_per_actor is not None and clips_per_actor < 1):
        raise UsageError("--jobs and --clips-per-actor must be at least 1")
    runs = find_folds(target)
    out = Path(out) if out else target / "conditions"
    names = pick_conditions(conditions)
    first = read_servable_run(runs[0])
    sr = first["features"]["sample_rate"]
    noise = NoiseBank.synthetic_bank(seed, sr) if synthetic_noise else NoiseBank.from_dirs(noise_dirs, sr)
    rooms = RoomBank(seed, sr, out / "rooms")
    renderer = Renderer(noise, rooms, seed, sr)
    moved = {c.sha256: c.path for c in load_corpus(data).clips} if data else None
    folds = {d.name: {"run_dir": d, "clips": fold_clips(d, moved, clips_per_actor, seed),
                      "bundle": bundle_dir(Path(bundles), d, len(runs) == 1) if bundles else None} for d in runs}
    pools = sorted({PARTS[p][1] for f in folds.values() for p in f["clips"]})
    skipped = {n: {pool: why for pool in pools if (why := renderer.missing(CONDITIONS[n], pool))} for n in names}
    for n, why in skipped.items():
        for pool, reason in why.items():
            print(f"not measured: {n} on the {pool} pool: {reason}", file=sys.stderr)
    if any(CONDITIONS[n].family in ("reverb", "room") for n in names):
        for pool in pools:
            t = time.perf_counter()
            rooms.all(pool)
            print(f"rooms of the {pool} pool ready ({time.perf_counter() - t:.0f} s; kept in {out / 'rooms'})", file=sys.stderr)
    cache, todo, cached, keys_of = out / "cache", [], 0, {}
    for fold, f in folds.items():
        model_id = sha256_file(_model_file(f["run_dir"], f["bundle"]))
        for part, clips in f["clips"].items():
            pool, keys = PARTS[part][1], []
            for n in (n for n in names if pool not in skipped[n]):
                key = keys_of[fold, part, n] = _key(renderer.signature(CONDITIONS[n], pool), model_id,
                                                    [c.sha256 or c.name for c in clips])
                if read_cached(cache_path(cache, fold, part, n), key):
                    cached += 1
                else:
                    keys.append((n, key))
            if keys:
                todo.append(Job(fold, f["run_dir"], part, clips, tuple(keys), cache, seed, tuple(map(str, noise_dirs)),
                                synthetic_noise, out / "rooms", f["bundle"]))
    units = sum(len(j.todo) for j in todo)
    print(f"{units} fold-part-conditions to score ({cached} cached), {jobs} process(es)", file=sys.stderr)
    start = time.perf_counter()
    if jobs == 1 or len(todo) <= 1:
        for job in todo:
            score_job(job)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init) as pool:
            list(pool.map(score_job, todo))
    wall = time.perf_counter() - start

    from .conditions_report import report
    from .rundir import command

    results = {f: {(part, n): read_cached(cache_path(cache, f, part, n), key)
                   for (f2, part, n), key in keys_of.items() if f2 == f} for f in folds}
    if any(r is None for by in results.values() for r in by.values()):
        raise UsageError(f"{cache}: a result went missing while scoring (another process on the same --out?); run again")
    meta = {"format_version": FORMAT_VERSION, "render_version": RENDER_VERSION, "target": str(target.resolve()),
            "model": f"converted bundles in {bundles}" if bundles else "each fold's Keras model (float)",
            "seed": seed, "clips_per_actor": clips_per_actor, "labels": first["labels"], "eval_hop_s": first["eval_hop_s"],
            "command": command(argv), "noise": noise.describe(),
            "rooms": {pool: [r.describe() for r in rooms.all(pool)] for pool in pools}
            if any(CONDITIONS[n].family in ("reverb", "room") for n in names) else {},
            "timing": {"scored_now": units, "jobs": jobs, "wall_s": round(wall, 1)}}
    full = sum(_scored_rows(f["run_dir"]) for f in folds.values()) * len(CONDITIONS)
    report(out, meta, {f: v["clips"] for f, v in folds.items()}, names, skipped, results, full)
    print(f"{out}: {RESULT_FILE}, conditions.md, conditions.png ({units} scored now in {wall:.0f} s)", file=sys.stderr)
    return json.loads((out / RESULT_FILE).read_text(encoding="utf-8"))
