"""`moodmic` as a user runs it: version, help, predict's JSON lines, and edge without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge import __version__
from edge.model import EmotionModel
from edge.predict import predict_audio, predict_file

from conftest import REPO, SR, TINY_FLOAT, TINY_INT8, run_moodmic, speechlike, write


def test_version_and_help():
    proc = run_moodmic("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"moodmic {__version__}"
    proc = run_moodmic("--help")
    assert proc.returncode == 0 and "predict" in proc.stdout
    proc = run_moodmic("predict")  # no file: a usage error
    assert proc.returncode == 2 and "give audio files to classify, or --sample" in proc.stderr
    proc = run_moodmic("predict", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_predict_prints_one_json_line_per_file_in_the_result_schema(tmp_path):
    a = write(tmp_path / "a.wav", speechlike(4.0, seed=1))
    b = write(tmp_path / "b.flac", speechlike(1.5, seed=2))
    proc = run_moodmic("predict", "--model", str(TINY_INT8), str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in lines] == [str(a), str(b)]
    labels = list(EmotionModel.load(TINY_INT8).labels)
    for r in lines:
        assert list(r) == ["path", "label", "confidence", "probabilities", "windows", "speech_windows", "max_rms_dbfs",
                           "uncertain"]
        assert list(r["probabilities"]) == labels
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["confidence"] == r["probabilities"][r["label"]]
    assert [r["windows"] for r in lines] == [2, 1]  # 4 s: windows at 0 and 1 s; 1.5 s: padded once


def test_predict_windows_lists_every_window_and_averages_them(tmp_path):
    wav = write(tmp_path / "a.wav", speechlike(5.0, seed=3))
    proc = run_moodmic("predict", "--windows", "--model", str(TINY_FLOAT), str(wav))
    result = json.loads(proc.stdout)
    per = result["per_window"]
    assert len(per) == result["windows"] == 3
    assert [w["start_s"] for w in per] == [0.0, 1.0, 2.0] and per[0]["end_s"] == 2.644
    assert set(per[0]) == {"start_s", "end_s", "label", "confidence", "probabilities", "rms_dbfs"}
    assert -30 < per[0]["rms_dbfs"] < -5
    mean = {k: np.mean([w["probabilities"][k] for w in per]) for k in result["probabilities"]}
    for k, v in result["probabilities"].items():
        assert abs(mean[k] - v) < 2e-4


def test_cli_equals_the_one_whole_file_function(tmp_path):
    wav = write(tmp_path / "a.wav", speechlike(6.0, sr=48000, seed=4), 48000)  # resampled on the way in
    proc = run_moodmic("predict", "--model", str(TINY_INT8), str(wav))
    model = EmotionModel.load(TINY_INT8)
    direct = predict_file(model, wav).to_dict()
    assert json.loads(proc.stdout) == direct
    from edge.audio import load_audio

    audio = load_audio(wav, SR)
    again = predict_audio(audio, model.frontend, model.bundle.eval_hop_frames, model.probabilities, model.labels, str(wav))
    assert again.to_dict() == direct


def test_bundled_sample_is_found_by_the_installed_package():
    proc = run_moodmic("predict", "--sample", "--model", str(TINY_INT8))
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["path"].endswith("samples/speech.flac") and result["windows"] == 2
    # a bundle without a training record: the note says what the sample is, and that it cannot say more
    assert "speech.flac is RAVDESS actor 08, happy" in proc.stderr and "does not say whether it heard" in proc.stderr


def test_the_sample_is_the_ravdess_clip_its_facts_name():
    import hashlib

    from edge.cli import SAMPLE, SAMPLE_FACTS

    facts = json.loads(SAMPLE_FACTS.read_text())
    assert SAMPLE.stat().st_size <= 200 * 1024 and hashlib.sha256(SAMPLE.read_bytes()).hexdigest() == facts["sha256"]
    # RAVDESS names encode the labels: 03-VC-EE-II-SS-RR-AA (../shared/data/ravdess/README.md)
    _, channel, emotion, _, _, _, actor = Path(facts["ravdess_file"]).stem.split("-")
    emotions = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert (channel, emotions[int(emotion) - 1], actor) == ("01", facts["emotion"], facts["actor"])
    assert facts["license"] == "CC BY-NC-SA 4.0" and "10.1371/journal.pone.0196391" in facts["attribution"]


def test_the_sample_demo_with_the_shipped_model_says_what_it_is_and_gets_it_right():
    facts = json.loads((REPO / "edge" / "samples" / "speech.json").read_text())
    note = f"moodmic: speech.flac is RAVDESS actor {facts['actor']}, {facts['emotion']} ("
    proc = run_moodmic("predict", "--sample")
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["label"] == facts["emotion"] and result["confidence"] > 0.9, result
    assert result["speech_windows"] == result["windows"]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("moodmic:")]
    assert len(lines) == 1 and lines[0].startswith(note) and lines[0].endswith("an actor the model heard in training")
    proc = run_moodmic("run", "--sample", "--fast", "--mqtt", "off")
    states = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and [s["label"] for s in states] == [facts["emotion"]], proc.stderr
    assert note in proc.stderr


def test_real_ravdess_clip(ravdess):
    clip = next((ravdess / "speech" / "Actor_01").glob("*.flac"))
    proc = run_moodmic("predict", "--model", str(TINY_INT8), str(clip))
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["windows"] >= 1 and abs(sum(result["probabilities"].values()) - 1) < 0.02


REFUSE_HEAVY = """
import importlib, pkgutil, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"tensorflow", "librosa", "tf_keras", "keras", "keras_self_attention"}:
            raise ImportError("edge must not import " + name)
sys.meta_path.insert(0, Refuse())
import edge
for info in pkgutil.walk_packages(edge.__path__, "edge."):
    importlib.import_module(info.name)
from edge.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "librosa", "tf_keras", "keras"})
print("HEAVY", heavy, file=sys.stderr)
sys.exit(code)
"""


def test_edge_runs_without_tensorflow_or_librosa(tmp_path):
    wav = write(tmp_path / "a.wav", speechlike(3.0))
    proc = subprocess.run([sys.executable, "-c", REFUSE_HEAVY, "predict", "--model", str(TINY_INT8), str(wav)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr
    assert json.loads(proc.stdout)["windows"] == 1


# The desktop commands on a device install (`.[edge]`: no TensorFlow), run as their console scripts are
# (pyproject [project.scripts]), with TensorFlow unimportable.
WITHOUT_TENSORFLOW = """
import importlib, sys, tomllib
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError("No module named " + repr(name), name=name)
sys.meta_path.insert(0, NotInstalled())
script = tomllib.load(open("pyproject.toml", "rb"))["project"]["scripts"][sys.argv[1]]
module, func = script.split(":")
sys.argv[:] = [sys.argv[1], *sys.argv[2:]]
sys.exit(getattr(importlib.import_module(module), func)())
"""


def test_train_and_convert_without_tensorflow_say_how_to_install_it(tmp_path):
    from edge.errors import EXIT_UNAVAILABLE

    for script, args in (("moodmic-train", ["train", "--out", str(tmp_path / "run")]),
                         ("moodmic-convert", [str(tmp_path / "run"), "--out", str(tmp_path / "bundle")])):
        proc = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, script, *args],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == EXIT_UNAVAILABLE and proc.stdout == "", (script, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"{script}: error: tensorflow not installed"), proc.stderr
        assert "pip install '.[train]'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_hop_the_bundle_cannot_take_exits_78_before_any_audio(tmp_path):
    # windows.hop_seconds passes config validation (0.02..60) but must be a whole number of the bundle's
    # 20 ms frames: checked right after the bundle loads, before the source is opened (it does not exist here).
    for hop, nearest in (("0.03", "0.02 or 0.04"), ("0.25", "0.24 or 0.26")):
        config = tmp_path / f"hop{hop}.yaml"
        config.write_text(f"windows:\n  hop_seconds: {hop}\n")
        proc = run_moodmic("run", "--config", str(config), "--model", str(TINY_INT8), "--source",
                           f"file:{tmp_path / 'absent.wav'}", "--mqtt", "off")
        lines = [line for line in proc.stderr.splitlines() if "INFO" not in line]  # the runtime's own log lines
        assert proc.returncode == 78 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"moodmic: error: windows.hop_seconds: {hop} s is not a whole number of the "
                                   "model's 20 ms frames") and lines[0].endswith(nearest), lines[0]


def test_predict_tells_nothing_there_from_speech(tmp_path):
    # The model gives near-silence an emotion too (dithered silence: "sad 0.27"); the result says there
    # was nothing to classify: no window the daemon's gate would pass, and the loudest window's level.
    rng = np.random.default_rng(0)
    dither = write(tmp_path / "dither.wav", rng.integers(-1, 2, 4 * SR).astype(np.int16), subtype="PCM_16")  # -96 dBFS
    noise = rng.standard_normal(4 * SR)
    noise = write(tmp_path / "noise.wav", (noise * 10 ** (-60 / 20) / np.sqrt(np.mean(noise**2))).astype(np.float32))
    proc = run_moodmic("predict", "--model", str(TINY_INT8), "--sample", str(dither), str(noise))
    assert proc.returncode == 0, proc.stderr
    quiet, hiss, sample = (json.loads(line) for line in proc.stdout.splitlines())
    assert quiet["speech_windows"] == 0 and quiet["max_rms_dbfs"] < -85 and quiet["windows"] == 2
    assert hiss["speech_windows"] == 0 and abs(hiss["max_rms_dbfs"] + 60) < 0.5
    assert sample["speech_windows"] >= sample["windows"] - 1 and -35 < sample["max_rms_dbfs"] < -10  # real speech
    # the count is the configured gate's: switched off, every window passes
    config = tmp_path / "c.yaml"
    config.write_text("gate:\n  enabled: false\n")
    proc = run_moodmic("predict", "--config", str(config), "--model", str(TINY_INT8), str(dither))
    assert json.loads(proc.stdout)["speech_windows"] == 2


def test_the_corpus_defaults_to_moodmic_data_else_beside_the_working_directory(tmp_path):
    """Not beside the installed package: a non-editable install of the train extra finds the corpus
    from where the user works (../shared/data/ravdess), or from $MOODMIC_DATA."""
    checkout, corpus = tmp_path / "work" / "checkout", tmp_path / "work" / "shared" / "data" / "ravdess"
    checkout.mkdir(parents=True)
    code = "from trainer.cli import _default_data; print(_default_data())"

    def default_data(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env})

    missing = default_data({})
    assert missing.returncode != 0 and "$MOODMIC_DATA" in missing.stderr and str(corpus) in missing.stderr
    corpus.mkdir(parents=True)
    assert default_data({}).stdout.strip() == str(corpus)
    elsewhere = tmp_path / "elsewhere"
    assert default_data({"MOODMIC_DATA": str(elsewhere)}).stdout.strip() != str(elsewhere)  # must exist
    elsewhere.mkdir()
    assert default_data({"MOODMIC_DATA": str(elsewhere)}).stdout.strip() == str(elsewhere)
    helptext = subprocess.run([sys.executable, "-m", "trainer.cli", "train", "--help"], cwd=checkout, capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "COLUMNS": "200"}).stdout
    assert "$MOODMIC_DATA, else ../shared/data/ravdess relative to the current directory" in " ".join(helptext.split())
