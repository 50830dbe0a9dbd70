"""The research scripts' tests (TensorFlow; some need the RAVDESS corpus): the architectures that left
the trainer, the test-time options and the embedding probe on a small members cross-validation, and
the YAMNet and Whisper probes, the teacher files and Whisper's encoder and cost, on synthetic inputs.
Not in the default pytest run: `pytest research/tests -q`."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the research scripts need the train extra (TensorFlow)")
pytest.importorskip("tf_keras", reason="the research scripts need the train extra (tf-keras)")

from edge.features import FeatureParams  # noqa: E402
from trainer.model import build_model  # noqa: E402
from trainer.settings import ModelSettings  # noqa: E402

P = FeatureParams()
REPO = Path(__file__).resolve().parents[2]
RESEARCH = REPO / "research"
TINY_FLOAT = REPO / "tests" / "fixtures" / "tiny_float"


def _windows(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-70, -5, (n, P.n_frames, P.n_mels)).astype(np.float32)
    x[:, :12] = P.floor_db  # leading digital silence
    return x


def _recipe_module(name):
    spec = importlib.util.spec_from_file_location(name, RESEARCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def research_archs():
    import architectures

    architectures.register()
    return architectures


def test_stats_pooling_sees_how_much_a_feature_moves_and_converts_to_builtin_ops(research_archs):
    from converter.build import tflite_converter
    from converter.graph import check_builtin_only, op_names
    from edge.interpreter import TFLiteModel

    steady = np.ones((1, 8, 2), np.float32)
    moving = np.array([[[0.0, 1.0], [2.0, 1.0]] * 4], np.float32)  # same mean, channel 0 moves
    a, b = research_archs.StatsPooling()(steady).numpy(), research_archs.StatsPooling()(moving).numpy()
    assert np.allclose(a[0, :2], b[0, :2]) and np.allclose(a[0, 2:], 0, atol=0.01) and b[0, 2] == pytest.approx(1.0, abs=0.01)
    model = build_model("cnn_stats", 8, P, settings=ModelSettings())
    x = _windows(2)
    z = model.predict_on_batch(x)
    clone = build_model("cnn_stats", 8, P, batch_size=1, settings=ModelSettings())
    clone.set_weights(model.get_weights())
    tflite = tflite_converter(clone, "dynamic").convert()
    check_builtin_only(op_names(tflite))
    assert np.abs(TFLiteModel(tflite).run(x) - z).max() < 0.05 * np.abs(z).max()


def test_wide_cnn_has_one_and_a_half_times_the_channels_of_every_layer(research_archs):
    import tf_keras as keras

    def conv_filters(arch):
        return [layer.filters for layer in build_model(arch, 8, P, settings=ModelSettings()).layers
                if isinstance(layer, keras.layers.Conv1D)]

    narrow, wide = conv_filters("cnn"), conv_filters("cnn_wide")
    assert len(narrow) == len(wide) == 4 and wide == [int(f * 1.5) for f in narrow]


def test_research_architectures_build_and_clone_at_batch_1_like_the_trainers(research_archs):
    for arch in sorted(research_archs.ARCHS):
        model = build_model(arch, 5, P)
        x = _windows(2)
        one = build_model(arch, 5, P, batch_size=1)
        one.set_weights(model.get_weights())
        assert np.allclose(one.predict_on_batch(x[:1]), model.predict_on_batch(x)[:1], atol=1e-5), arch


@pytest.fixture(scope="module")
def members_cv(tmp_path_factory):
    """A members cross-validation of the `tiny` architecture on a synthetic corpus (two init seeds, 3 folds)."""
    from trainer.cli import main as train

    from trainer_synth import tiny_cvs

    tmp = tmp_path_factory.mktemp("members")
    cvs = tiny_cvs(tmp)
    out = tmp / "members"
    assert train(["members", *map(str, cvs), "--out", str(out), "--eval-hop", "0.2"]) == 0
    return out


def test_test_time_options_and_the_embedding_probe_on_a_members_cross_validation(members_cv, tmp_path):
    from trainer.rundir import read_run

    out = members_cv
    # test-time options: "as scored" reproduces each fold's own figures (same windows, same averaging)
    options = tmp_path / "test-time"
    proc = subprocess.run([sys.executable, str(RESEARCH / "test_time.py"), str(out), "--out", str(options)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((options / "test_time.json").read_text())
    assert set(result["summary"]) == {"as scored", "warp 3", "warp 5", "class bias"}
    for k, row in zip(result["folds"], result["per_fold"]["as scored"]):
        fold = read_run(out / f"fold-{k}")
        for part in ("val", "test"):
            assert row[part]["all"] == pytest.approx(fold["metrics"][part]["all"]["unweighted_accuracy"])

    # the speech-embedding probe (features given, as its cache): fused with weight 0 it is each fold's
    # own ensemble; the row it names is the best on validation, whatever the test actors say
    from trainer.corpus import load_corpus

    probe = tmp_path / "probe"
    probe.mkdir()
    names = [c.name for c in load_corpus(read_run(out / "fold-0")["settings"]["data"]).usable]
    noise = np.random.default_rng(0).normal
    np.savez(probe / "features.npz", names=np.array(names), embedding=noise(size=(len(names), 192)),
             log_mel=noise(size=(len(names), 256)), pooling=np.array("clip"))
    proc = subprocess.run([sys.executable, str(RESEARCH / "embedding_probe.py"), str(out), "--out", str(probe),
                           "--refit", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((probe / "embedding_probe.json").read_text())
    folds = [read_run(out / f"fold-{k}")["metrics"] for k in range(3)]
    for row in (r for r in result["rows"] if r["w"] == 0):
        for part in ("val", "test"):
            assert row[part]["all"]["mean"] == pytest.approx(np.mean([f[part]["all"]["unweighted_accuracy"] for f in folds]))
    fused = [r for r in result["rows"] if r["w"] < 1]
    assert result["chosen_on_validation_all"]["val"]["all"]["mean"] == max(r["val"]["all"]["mean"] for r in fused)
    expected = np.mean([f["test"]["all"]["unweighted_accuracy"] for f in folds])
    assert result["refit"]["ensemble"]["all"]["mean"] == pytest.approx(expected)
    # features cached per clip are not taken for per-window ones
    proc = subprocess.run([sys.executable, str(RESEARCH / "embedding_probe.py"), str(out), "--out", str(probe),
                           "--windows", "0.2"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "pooled per clip, not per window 0.2" in proc.stderr
    # per window: several rows per clip, the probe's window probabilities averaged per clip
    windows = tmp_path / "probe-windows"
    windows.mkdir()
    rows = np.repeat(names, 3)
    np.savez(windows / "features.npz", names=rows, embedding=noise(size=(len(rows), 192)), log_mel=noise(size=(len(rows), 256)))
    proc = subprocess.run([sys.executable, str(RESEARCH / "embedding_probe.py"), str(out), "--out", str(windows),
                           "--windows", "0.2"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    per_window = json.loads((windows / "embedding_probe.json").read_text())
    assert per_window["pooled"] == "per window, a window every 0.2 s"
    # at another level: the probe trained as before, the scored clips' features from the gained cache
    # (here the same values, so the same figures; the chosen setting's probe alone is its w = 1 row)
    shutil.copy(windows / "features.npz", windows / "features-gain-12dB.npz")
    gained = dict(np.load(windows / "features-gain-12dB.npz"))
    np.savez(windows / "features-gain-12dB.npz", **(gained | {"pooling": np.array("window 0.2, gain -12 dB")}))
    proc = subprocess.run([sys.executable, str(RESEARCH / "embedding_probe.py"), str(out), "--out", str(windows),
                           "--windows", "0.2", "--gain-db", "-12"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gain = json.loads((windows / "embedding_probe.json").read_text())["gain"]
    chosen = per_window["chosen_on_validation_all"]
    alone = next(r for r in per_window["rows"] if (r["inputs"], r["C"], r["w"]) == (chosen["inputs"], chosen["C"], 1.0))
    assert gain["0 dB"]["probe"]["test"] == alone["test"] and gain["-12 dB"] == gain["0 dB"]
    assert [r["val"]["all"]["mean"] for r in per_window["rows"] if r["w"] == 0] == \
        [r["val"]["all"]["mean"] for r in result["rows"] if r["w"] == 0]


def test_yamnet_probe_scores_each_layer_per_fold_and_names_the_best_on_validation(tmp_path, ravdess):
    """research/yamnet_probe.py on the real corpus's clips with its features given as its cache (the
    YAMNet file itself is not in the repository): a layer that carries the label reads near 1 on every
    fold's validation and test actors, noise reads near chance, and the chosen row is the best on
    validation. A .tflite without YAMNet's layer names is refused with the reason."""
    import subprocess
    import sys

    from trainer.corpus import LABELS, load_corpus

    clips = load_corpus(ravdess).usable
    rng = np.random.default_rng(0)
    y = np.array([LABELS.index(c.label) for c in clips])
    layers = {k: rng.normal(size=(len(clips), 8)) for k in ("layer6", "layer10", "layer12", "embedding", "scores")}
    layers["layer10"][np.arange(len(clips)), y] += 4.0  # the one layer that names the emotion
    out = tmp_path / "yamnet"
    out.mkdir()
    np.savez(out / "features.npz", names=np.array([c.name for c in clips]), **layers)
    model = tmp_path / "yamnet.tflite"
    shutil.copy(TINY_FLOAT / "model.tflite", model)  # only hashed: the cache holds the features
    run = [sys.executable, str(RESEARCH / "yamnet_probe.py"), str(model), "--data", str(ravdess), "--out", str(out)]
    proc = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "yamnet_probe.json").read_text())
    assert len(result["rows"]) == 10 and result["folds"] == list(range(5))
    for r in result["rows"]:
        for side in ("val", "test"):
            for group in ("all", "speech", "song"):
                ua = r[side][group]["mean"]
                assert (ua > 0.9) if r["layer"] == "layer10" else (ua < 0.3), (r["layer"], side, group, ua)
    assert result["chosen_on_validation_all"]["layer"] == "layer10"
    assert "| layer10 | 0.01 |" in (out / "yamnet_probe.md").read_text()

    # no cache, and a model without YAMNet's layer names: refused, naming what is missing
    proc = subprocess.run(run[:-1] + [str(tmp_path / "fresh")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "keeps the Keras layer names" in proc.stderr


def test_a_teacher_file_scores_each_clip_with_a_probe_that_never_heard_its_actor(tmp_path, ravdess):
    """research/clip_probe.write_teacher on the real corpus's clips: features that name the emotion
    give confident right answers on every side; features that name (actor, emotion) pairs, which only
    a probe that heard the actor could read, give chance: nothing of a clip's own actor leaks in."""
    from trainer.corpus import LABELS, load_corpus
    from trainer.teacher import side_key

    clip_probe = _recipe_module("clip_probe")
    training_sides, write_teacher = clip_probe.training_sides, clip_probe.write_teacher

    clips = load_corpus(ravdess).usable
    y = np.array([LABELS.index(c.label) for c in clips])
    actor = np.array([int(c.speaker) for c in clips])
    rng = np.random.default_rng(0)
    named = rng.normal(size=(len(clips), 8))
    named[np.arange(len(clips)), y] += 4.0
    code = rng.normal(size=(21, len(LABELS), 16))  # a private code per actor and emotion
    private = code[actor, y] + 0.1 * rng.normal(size=(len(clips), 16))
    sides = training_sides()
    assert len(sides) == 11 and len(sides[-1]) == 20 and {len(s) for s in sides[:5]} == {14}
    for x, readable in ((named, True), (private, False)):
        write_teacher(tmp_path / "t.npz", x, clips, 0.1)
        z = np.load(tmp_path / "t.npz")
        assert list(z["labels"]) == list(LABELS) and list(z["names"]) == [c.name for c in clips]
        for side in sides:
            p = z[side_key(side)]
            inside = np.isin([c.speaker for c in clips], side)
            assert np.isfinite(p[inside]).all() and np.isnan(p[~inside]).all()
            assert np.allclose(p[inside].sum(1), 1, atol=1e-5)
            accuracy = (p[inside].argmax(1) == y[inside]).mean()
            assert (accuracy > 0.9) if readable else (accuracy < 0.25), (side, readable, accuracy)


def _write_ct2(path, variables, spec="WhisperSpec"):
    """A CTranslate2 model.bin (format 6) holding `variables` (name -> float16 / int16 array)."""
    import struct

    def text(s):
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    blob = struct.pack("<I", 6) + text(spec) + struct.pack("<II", 3, len(variables))
    for name, a in sorted(variables.items()):
        code = {np.dtype(np.float16): 4, np.dtype(np.int16): 2}[a.dtype]
        blob += text(name) + struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
        blob += struct.pack("<BI", code, a.nbytes) + a.tobytes()
    path.write_bytes(blob + struct.pack("<I", 0))  # no aliases


def _tiny_whisper(rng, width=8, layers=2):
    f = lambda *shape: rng.normal(0, 0.2, shape).astype(np.float16)  # noqa: E731
    v = {"decoder/embeddings/weight": f(10, width), "encoder/num_heads": np.array(2, np.int16),
         "encoder/conv1/weight": f(width, 80, 3), "encoder/conv1/bias": f(width),
         "encoder/conv2/weight": f(width, width, 3), "encoder/conv2/bias": f(width),
         "encoder/position_encodings/encodings": f(1500, width),
         "encoder/layer_norm/gamma": np.ones(width, np.float16), "encoder/layer_norm/beta": np.zeros(width, np.float16)}
    for i in range(layers):
        p = f"encoder/layer_{i}/"
        for norm in ("self_attention/layer_norm", "ffn/layer_norm"):
            v[p + norm + "/gamma"], v[p + norm + "/beta"] = np.ones(width, np.float16), np.zeros(width, np.float16)
        v[p + "self_attention/linear_0/weight"], v[p + "self_attention/linear_0/bias"] = f(3 * width, width), f(3 * width)
        v[p + "self_attention/linear_1/weight"], v[p + "self_attention/linear_1/bias"] = f(width, width), f(width)
        v[p + "ffn/linear_0/weight"], v[p + "ffn/linear_0/bias"] = f(4 * width, width), f(4 * width)
        v[p + "ffn/linear_1/weight"], v[p + "ffn/linear_1/bias"] = f(width, 4 * width), f(width)
    return v


def test_whisper_cost_builds_the_encoder_to_a_depth_as_tflite_that_matches_the_numpy_encoder(tmp_path):
    """research/whisper_cost.py on a tiny CTranslate2 model: the float graph reads what
    research/whisper_encoder.py reads at that depth, the int8-weight one nearly so and smaller; a depth
    the model does not have is refused."""
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    _write_ct2(tmp_path / "model.bin", _tiny_whisper(rng, width=16, layers=3))
    run = [sys.executable, "research/whisper_cost.py", str(tmp_path / "model.bin"), "--depth", "2", "--invokes", "3",
           "--clip", str(REPO / "edge" / "samples" / "speech.flac"), "--out", str(tmp_path / "out")]
    proc = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cost = json.loads((tmp_path / "out" / "whisper_cost.json").read_text())
    rows = {r["mode"]: r for r in cost["rows"]}
    assert rows.pop("moodmic's default model")["macs"] > 0  # the yardstick
    assert cost["depth"] == 2 and cost["window_frames"] % 2 == 0
    assert rows["float32"]["max_abs_diff"] < 1e-4 * max(1.0, rows["float32"]["reference_scale"])
    assert rows["dynamic"]["max_abs_diff"] < 0.05 * rows["dynamic"]["reference_scale"]
    assert rows["dynamic"]["bytes"] < rows["float32"]["bytes"] and rows["float32"]["macs"] > 0
    assert all(r["wall_ms"]["median"] > 0 for r in rows.values())
    assert "| dynamic |" in (tmp_path / "out" / "whisper_cost.md").read_text()
    proc = subprocess.run(run[:4] + ["7"] + run[5:], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "has 3 layers" in proc.stderr


def test_the_whisper_encoder_reads_a_ctranslate2_file_and_returns_every_depth(tmp_path):
    """research/whisper_encoder.py on a tiny model written in CTranslate2's format: the decoder is
    skipped, the frames halve, positions are added, a layer whose outputs are zero passes its input
    on (through the final norm), and a truncated or foreign file is refused with the reason."""
    we = _recipe_module("whisper_encoder")
    rng = np.random.default_rng(0)
    v = _tiny_whisper(rng)
    _write_ct2(tmp_path / "model.bin", v)
    enc = we.WhisperEncoder(tmp_path / "model.bin")
    assert enc.layers == 2 and enc.heads == 2 and not any(k.startswith("decoder") for k in enc.w)
    mel = rng.normal(size=(80, 40)).astype(np.float32)
    outs = enc(mel)
    assert len(outs) == 3 and all(o.shape == (20, 8) for o in outs) and all(np.isfinite(o).all() for o in outs)
    assert not np.allclose(outs[1], outs[0]) and not np.allclose(outs[2], outs[1])

    silent = dict(v)  # no convolution: what reaches layer 0 is the positions alone
    for k in ("conv1/weight", "conv1/bias", "conv2/weight", "conv2/bias"):
        silent[f"encoder/{k}"] = np.zeros_like(v[f"encoder/{k}"])
    for i in range(2):  # and layers that add nothing
        for k in ("self_attention/linear_1/weight", "self_attention/linear_1/bias", "ffn/linear_1/weight", "ffn/linear_1/bias"):
            silent[f"encoder/layer_{i}/{k}"] = np.zeros_like(v[f"encoder/layer_{i}/{k}"])
    _write_ct2(tmp_path / "silent.bin", silent)
    outs = we.WhisperEncoder(tmp_path / "silent.bin")(mel)
    positions = v["encoder/position_encodings/encodings"][:20].astype(np.float32)
    assert np.allclose(outs[0], positions, atol=1e-6) and np.allclose(outs[1], positions, atol=1e-6)
    normed = (positions - positions.mean(-1, keepdims=True)) / np.sqrt(positions.var(-1, keepdims=True) + 1e-5)
    assert np.allclose(outs[2], normed, atol=1e-4)

    blob = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SystemExit, match="incomplete"):
        we.read_ct2(tmp_path / "cut.bin")
    _write_ct2(tmp_path / "other.bin", {"x": np.zeros(2, np.float16)}, spec="TransformerSpec")
    with pytest.raises(SystemExit, match="not a Whisper model"):
        we.read_ct2(tmp_path / "other.bin")


def test_whisper_log_mel_is_whispers_own_frontend():
    """80 bands at 100 frames a second, floored 8 (log10) below the loudest, scaled as Whisper scales it."""
    we = _recipe_module("whisper_encoder")
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    mel = we.log_mel(tone)
    assert mel.shape == (80, 100)
    assert np.isclose(mel.max() - mel.min(), 2.0, atol=1e-5)  # the 8-decade floor, divided by 4
    import librosa

    band = np.argmin(np.abs(librosa.mel_frequencies(82, fmax=8000)[1:-1] - 1000))
    assert abs(int(np.median(mel.argmax(0))) - band) <= 1  # the tone's band is the loudest


def test_whisper_probe_scores_each_depth_per_fold_and_writes_a_teacher(tmp_path, ravdess):
    """research/whisper_probe.py with its features given as its cache (the Whisper file is not in the
    repository): the one depth that carries the label is chosen on validation, and --teacher writes
    soft labels from it for every training side."""
    import subprocess
    import sys

    from trainer.corpus import LABELS, load_corpus
    from trainer.teacher import side_key

    clips = load_corpus(ravdess).usable
    rng = np.random.default_rng(0)
    y = np.array([LABELS.index(c.label) for c in clips])
    depths = {f"depth {d}": rng.normal(size=(len(clips), 8)) for d in range(7)}
    depths["depth 3"][np.arange(len(clips)), y] += 4.0
    out = tmp_path / "whisper"
    out.mkdir()
    np.savez(out / "features.npz", names=np.array([c.name for c in clips]), **depths)
    model = tmp_path / "model.bin"
    shutil.copy(TINY_FLOAT / "model.tflite", model)  # only hashed: the cache holds the features
    run = [sys.executable, str(RESEARCH / "whisper_probe.py"), str(model), "--data", str(ravdess),
           "--out", str(out), "--teacher", str(tmp_path / "teacher.npz")]
    proc = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "whisper_probe.json").read_text())
    assert len(result["rows"]) == 14 and result["chosen_on_validation_all"]["layer"] == "depth 3"
    for r in result["rows"]:
        ua = r["test"]["speech"]["mean"]
        assert (ua > 0.9) if r["layer"] == "depth 3" else (ua < 0.3), (r["layer"], ua)
    z = np.load(tmp_path / "teacher.npz")
    every = tuple(sorted({c.speaker for c in clips}))
    assert (z[side_key(every)].argmax(1) == y).mean() > 0.9
