"""Keras graphs made from run directories: a run's model rebuilt at a fixed batch size (the
converter's batch-1 clone), and several runs' models averaged in one graph (ensemble, members,
final).

Needs TensorFlow (trainer.model) only when a function runs, so the commands that import it stay
importable without the train extra.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edge.features import FeatureParams

from .rundir import read_run
from .settings import ModelSettings


def rebuild_model(run_dir: str | Path, batch_size: int | None = 1):
    """The run's trained model rebuilt with a fixed batch size (the converter's batch-1 clone)."""
    from .model import build_model, load_keras_model

    run = read_run(run_dir)
    trained = load_keras_model(Path(run_dir) / run["keras_model"], compile=False)
    if "members" in run:  # an ensemble (ensemble, members, final): members averaged in one graph
        return rebuild_ensemble(run, trained, batch_size)
    clone = build_model(run["arch"], len(run["labels"]), FeatureParams.from_dict(run["features"]), batch_size,
                        ModelSettings.from_dict(run["settings"].get("model")))
    clone.set_weights(trained.get_weights())
    return clone


def combine(members: list, batch_size: int | None, params: FeatureParams, logits: bool):
    """One model averaging `members` (Keras models, each renamed as it is to appear) on a shared input."""
    from .model import LOGITS, keras

    inp = keras.Input(shape=(params.n_frames, params.n_mels), batch_size=batch_size, name="log_mel")
    outs = [m(inp) for m in members]
    out = keras.layers.Average(name=LOGITS if logits else "probabilities")(outs)
    return keras.Model(inp, out, name="moodmic_ensemble")


def combine_runs(run_dirs: list[Path], runs: list[dict], names: list[str]):
    """One model averaging the trained models of `run_dirs` (their run.json in `runs`), renamed `names`."""
    from .model import load_keras_model

    members = []
    for d, r, name in zip(run_dirs, runs, names):
        m = load_keras_model(d / r["keras_model"], compile=False)
        m._name = name
        members.append(m)
    logits = bool((runs[0]["settings"].get("model") or {}).get("logits", False))
    return combine(members, None, FeatureParams.from_dict(runs[0]["features"]), logits)


def rebuild_ensemble(run: dict, trained, batch_size: int | None):
    """An averaged model with a fixed batch size: each member rebuilt from its architecture, weights copied."""
    from .model import build_model

    params = FeatureParams.from_dict(run["features"])
    member_settings = replace(ModelSettings.from_dict(run["settings"]["model"]), ensemble=1)
    members = []
    for m in run["members"]:
        clone = build_model(run["arch"], len(run["labels"]), params, batch_size, member_settings)
        clone.set_weights(trained.get_layer(m["name"]).get_weights())
        clone._name = m["name"]
        members.append(clone)
    return combine(members, batch_size, params, member_settings.logits)
