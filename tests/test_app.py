"""The web page (edge/app.py) through Streamlit's AppTest, and its logic (edge/app_core.py) directly.

The page must show, for an uploaded or recorded file, exactly what `moodmic predict --windows`
prints for it (the same bundle, frontend and whole-file prediction), and for a bad upload the
one-line message `moodmic predict` gives, never a traceback.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import tempfile

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, SR, TINY_INT8, ravdess_clips, run_moodmic, speechlike, write

pytest.importorskip("streamlit", reason="the web page needs the app extra: pip install '.[app]'")

import streamlit as st
from streamlit.testing.v1 import AppTest

from edge import app_core
from edge.config import GateSettings, load_settings
from edge.errors import BadAudioError
from edge.model import EmotionModel
from edge.predict import predict_file

APP = REPO / "edge" / "app.py"
TIMEOUT = 60  # seconds for one script run (the first loads the model)


@pytest.fixture(autouse=True)
def clean_app(monkeypatch):
    """Each test: the page's own argv (not pytest's), no config from the environment, empty caches."""
    monkeypatch.setattr(sys, "argv", [str(APP)])
    monkeypatch.delenv("MOODMIC_CONFIG", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    return EmotionModel.load(None)


def app(*argv: str) -> AppTest:
    sys.argv = [str(APP), *argv]  # restored by clean_app's monkeypatch
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def upload(at: AppTest, name: str, data: bytes, mime: str = "application/octet-stream") -> AppTest:
    at.file_uploader(key="moodmic_upload").set_value((name, data, mime))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str | None:
    values = [m.value for m in at.main.metric if m.label == label]
    return values[0] if values else None


def page_result(at: AppTest) -> dict:
    """The result the page shows, from its JSON panel (`predict --windows` schema)."""
    assert len(at.json) == 1
    return json.loads(at.json[0].value)


def chart_data(at: AppTest, index: int):
    """(vega-lite spec, [each dataset as a DataFrame]) of the page's index-th chart."""
    import pyarrow as pa

    chart = at.get("vega_lite_chart")[index]
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]
    return json.loads(chart.proto.spec), frames


def cli_predict(*paths, config=None) -> tuple[dict[str, dict], dict[str, str]]:
    """`moodmic predict --windows` in a fresh process: ({path: result}, {path: error message})."""
    proc = run_moodmic("predict", "--windows", *(["--config", str(config)] if config else []), *map(str, paths))
    results = {r["path"]: r for r in map(json.loads, proc.stdout.splitlines())}
    errors = {}
    for line in proc.stderr.splitlines():
        if line.startswith("moodmic: error: "):
            message = line[len("moodmic: error: "):]
            errors[next(str(p) for p in paths if message.startswith(f"{p}: "))] = message
    return results, errors


def assert_page_shows(at: AppTest, expected: dict, name: str, labels: tuple[str, ...]) -> None:
    """The page shows `moodmic predict --windows`'s result for the file uploaded as `name`."""
    assert not at.error, [e.value for e in at.error]
    assert page_result(at) == {**expected, "path": name}
    assert metric(at, "Emotion") == expected["label"]
    assert metric(at, "Confidence") == f"{expected['confidence']:.0%}"
    spec, (bars,) = chart_data(at, 0)  # every probability, in the model's label order
    assert spec["layer"][0]["encoding"]["y"]["sort"] == list(labels)
    assert list(bars["emotion"]) == list(labels)
    assert list(bars["probability"]) == [expected["probabilities"][label] for label in labels]
    assert len(at.get("image")) == 1  # the spectrogram
    assert len(at.get("audio")) == 1  # playback
    assert len(at.get("vega_lite_chart")) == (2 if expected["windows"] > 1 else 1)  # + the timeline
    if expected["windows"] > 1:
        _, frames = chart_data(at, 1)  # the windows' probabilities, and each window's label
        lines = next(f for f in frames if "probability" in f)
        strip = next(f for f in frames if "confidence" in f)
        assert len(lines) == expected["windows"] * len(labels)
        assert list(strip["emotion"]) == [w["label"] for w in expected["per_window"]]


# ---- the page shows `moodmic predict`'s result ----------------------------------------------------

def test_synthetic_files_show_what_moodmic_predict_prints(tmp_path, model):
    # 22.05 kHz stereo FLAC (resampled, downmixed), several windows; a 16 kHz WAV shorter than one window.
    stereo = np.stack([speechlike(4.5, 22050, seed=1), speechlike(4.5, 22050, seed=2) * 0.5], axis=1)
    long_clip = write(tmp_path / "talk.flac", stereo, 22050)
    short_clip = write(tmp_path / "short.wav", speechlike(1.2, SR, seed=3), SR, subtype="PCM_16")
    expected, errors = cli_predict(long_clip, short_clip)
    assert not errors
    at = app()
    for clip in (long_clip, short_clip):
        upload(at, clip.name, clip.read_bytes())
        assert_page_shows(at, expected[str(clip)], clip.name, model.labels)
    assert page_result(at)["windows"] == 1


def test_a_ravdess_clip_shows_what_moodmic_predict_prints(ravdess, model):
    clip = ravdess_clips(ravdess, 1, seed=7)[0]
    expected, errors = cli_predict(clip)
    assert not errors
    at = upload(app(), clip.name, clip.read_bytes(), "audio/wav")
    assert_page_shows(at, expected[str(clip)], clip.name, model.labels)
    assert at.main.subheader[0].value == clip.name


def test_a_microphone_recording_is_analysed_like_a_file(tmp_path, model):
    rec = write(tmp_path / "rec.wav", speechlike(3.0, SR, seed=4), SR, subtype="PCM_16")
    at = app()
    at.audio_input(key="moodmic_record").upload("recording.wav", rec.read_bytes())
    at.run()
    assert not at.exception
    expected = predict_file(model, rec).to_dict(with_windows=True)
    assert_page_shows(at, {**expected, "path": "recording.wav"}, "recording.wav", model.labels)


def test_the_latest_input_wins(tmp_path, model):
    a = write(tmp_path / "a.wav", speechlike(3.0, SR, seed=5))
    b = write(tmp_path / "b.wav", speechlike(3.0, SR, seed=6))
    at = upload(app(), "a.wav", a.read_bytes())
    assert page_result(at)["path"] == "a.wav"
    at.audio_input(key="moodmic_record").upload("recording.wav", b.read_bytes())
    at.run()
    assert page_result(at)["path"] == "recording.wav"
    upload(at, "a2.wav", a.read_bytes())
    assert page_result(at)["path"] == "a2.wav"


def colour_encodings(spec) -> list[dict]:
    """Every `color` encoding of a vega-lite spec (layers included) that maps a field."""
    found = []
    if isinstance(spec, dict):
        colour = (spec.get("encoding") or {}).get("color")
        if isinstance(colour, dict) and "field" in colour:
            found.append(colour)
        for value in spec.values():
            found += colour_encodings(value)
    elif isinstance(spec, list):
        for value in spec:
            found += colour_encodings(value)
    return found


def test_one_colour_per_emotion_on_every_chart(tmp_path, model):
    clip = write(tmp_path / "talk.wav", speechlike(5.0, SR, seed=14))
    at = upload(app(), clip.name, clip.read_bytes())
    palette = app_core.emotion_colours(model.labels)
    assert len(set(palette)) == len(model.labels) and palette[model.labels.index("angry")] == "#d55e00"
    for index in (0, 1):  # the probabilities and the timeline
        spec, _ = chart_data(at, index)
        encodings = colour_encodings(spec)
        assert encodings, f"chart {index} has no colour by emotion"
        for colour in encodings:
            assert colour["field"] == "emotion"
            assert colour["scale"]["domain"] == list(model.labels) and colour["scale"]["range"] == palette
    # a bundle with labels beyond the eight still gets one distinct colour each
    assert len(set(app_core.emotion_colours(("calm", "bored", "sleepy", "sad")))) == 4


def test_the_timeline_says_both_hops_as_they_are(tmp_path, model):
    clip = write(tmp_path / "talk.wav", speechlike(5.0, SR, seed=15))
    hop = model.bundle.eval_hop_s

    def timeline(at) -> str:
        return next(m.value for m in at.main.markdown if m.value.startswith("**Timeline**"))

    at = upload(app(), clip.name, clip.read_bytes())
    text, windows = timeline(at), page_result(at)["windows"]
    assert f"the {windows} windows of 2.64 s, one every {hop:g} s (the model's evaluation hop)" in text
    assert "the daemon decides every 1 s (windows.hop_seconds)" in text  # the config's default
    config = tmp_path / "c.yaml"
    config.write_text("windows:\n  hop_seconds: 2\n")
    text = timeline(upload(app("--config", str(config)), clip.name, clip.read_bytes()))
    assert "the daemon decides every 2 s (windows.hop_seconds)" in text


def test_the_page_tells_nothing_there_from_speech(tmp_path, model):
    rng = np.random.default_rng(0)
    dither = write(tmp_path / "dither.wav", rng.integers(-1, 2, 4 * SR).astype(np.int16), subtype="PCM_16")
    at = upload(app(), "dither.wav", dither.read_bytes())
    result = page_result(at)
    assert result["speech_windows"] == 0 and result["max_rms_dbfs"] < -85
    assert result == {**cli_predict(dither)[0][str(dither)], "path": "dither.wav"}  # as predict says
    assert len(at.warning) == 1 and at.warning[0].value.startswith("No speech found: none of the")
    assert f"under the gate's {GateSettings().min_rms_dbfs:g} dBFS" in at.warning[0].value
    assert any(" · 0 with speech (the daemon's gate) · loudest window " in c.value for c in at.main.caption)
    sample = REPO / "edge" / "samples" / "speech.flac"  # real speech: every window passes, no warning
    at = upload(at, "speech.flac", sample.read_bytes())
    assert page_result(at)["speech_windows"] == page_result(at)["windows"] and not at.warning


# ---- bad uploads: the CLI's one-line message, in the page -----------------------------------------

def _bad_files(tmp_path):
    good = io.BytesIO()
    sf.write(good, speechlike(1.5, SR, seed=8), SR, format="WAV", subtype="PCM_16")
    nan = speechlike(1.5, SR, seed=9)
    nan[100] = np.nan
    return {
        "empty.wav": (b"", "is empty (0 bytes)"),
        "notes.wav": (b"meeting notes, not a recording\n" * 20, "not an audio file soundfile can read"),
        "cut.wav": (good.getvalue()[: len(good.getvalue()) // 2], "truncated"),
        "zeros.wav": (write(tmp_path / "z.wav", np.zeros(SR * 1, np.float32)).read_bytes(), "exact digital silence"),
        "nan.wav": (write(tmp_path / "n.wav", nan, subtype="FLOAT").read_bytes(), "NaN or infinite samples"),
        "long.flac": (write(tmp_path / "l.flac", speechlike(3.0, SR, seed=10)).read_bytes(), "over the 2 s limit"),
    }


def test_bad_uploads_show_the_message_moodmic_predict_gives(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("audio:\n  max_file_seconds: 2\n")
    cases = _bad_files(tmp_path)
    folder = tmp_path / "files"
    folder.mkdir()
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    results, cli_errors = cli_predict(*(folder / n for n in cases), config=config)
    assert not results and len(cli_errors) == len(cases)
    at = app("--config", str(config))
    for name, (data, needle) in cases.items():
        upload(at, name, data)
        assert [e.value for e in at.error] == [cli_errors[str(folder / name)].replace(str(folder / name), name)]
        assert needle in at.error[0].value and at.error[0].value.startswith(f"{name}: ")
        assert "Traceback" not in at.error[0].value and "\n" not in at.error[0].value
        assert metric(at, "Emotion") is None and not at.json  # no result shown
    good = write(tmp_path / "ok.wav", speechlike(1.5, SR, seed=11))
    upload(at, "ok.wav", good.read_bytes())  # and the page recovers
    assert not at.error and metric(at, "Emotion")


# Every format the uploader offers (accepted_extensions), as an odd but valid file: 22.05 kHz stereo.
_UPLOAD_FORMATS = [("wav", "WAV", "PCM_16"), ("wav", "WAVEX", "PCM_24"), ("flac", "FLAC", "PCM_16"),
                   ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III"), ("aiff", "AIFF", "PCM_16"),
                   ("au", "AU", "PCM_16"), ("caf", "CAF", "FLOAT"), ("w64", "W64", "PCM_U8"), ("rf64", "RF64", "PCM_32")]
_WRITES: list[str] = []  # what the audit hook saw opened for writing or created while armed
_ARMED: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if not _ARMED:
        return
    if event == "open" and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        _WRITES.append(f"open {args[0]}")
    elif event in ("os.mkdir", "tempfile.mkstemp", "tempfile.mkdtemp"):
        _WRITES.append(f"{event} {args[0]}")


sys.addaudithook(_audit)  # hooks cannot be removed: this one only records while a test arms it


def test_an_upload_is_decoded_from_memory_never_written_to_disk(tmp_path, model):
    """README: audio is never written to disk. The page decodes the uploaded bytes in memory, with the
    result `moodmic predict` gives for the same file (a path); a killed page leaves no copy behind."""
    stereo = np.stack([speechlike(3.5, 22050, seed=30), speechlike(3.5, 22050, seed=31) * 0.5], axis=1)
    formats = [f for f in _UPLOAD_FORMATS if f[1] in sf.available_formats()]
    assert {f[0] for f in formats} >= set(app_core.accepted_extensions()) - {"wave", "oga", "opus", "aif", "aifc", "snd"}
    uploads = {}
    for ext, fmt, subtype in formats:
        buf = io.BytesIO()
        sf.write(buf, stereo, 22050, format=fmt, subtype=subtype)
        uploads[f"talk-{fmt.lower()}.{ext}"] = buf.getvalue()
        (tmp_path / f"talk-{fmt.lower()}.{ext}").write_bytes(buf.getvalue())
    expected = {name: dataclasses.replace(predict_file(model, tmp_path / name, 600.0), path=name) for name in uploads}
    spool = set(os.listdir(tempfile.gettempdir()))
    _WRITES.clear()
    _ARMED.append(True)
    try:
        got = {name: app_core.analyse(data, name, model, 600.0).result for name, data in uploads.items()}
    finally:
        _ARMED.clear()
    assert _WRITES == []
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - spool if n.startswith("moodmic")}
    assert got == expected


def test_the_page_decodes_a_small_file_of_many_samples_in_bounded_memory(model):
    """60 s at 192 kHz x 8 channels is 100 KB of FLAC and 370 MB of float32 samples: the page must not
    hold them all; it costs what 60 s of 16 kHz mono costs, plus a block."""
    import tracemalloc

    def constant_flac(rate: int, channels: int) -> bytes:
        buf = io.BytesIO()
        with sf.SoundFile(buf, "w", rate, channels, "PCM_16", format="FLAC") as f:
            for _ in range(6):
                f.write(np.full((rate * 10, channels), 0.01, np.float32))
        return buf.getvalue()

    peaks = {}
    for name, data in (("plain.flac", constant_flac(SR, 1)), ("many.flac", constant_flac(192000, 8))):
        tracemalloc.start()
        try:
            app_core.analyse(data, name, model, 600.0)
            peaks[name] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    assert peaks["many.flac"] < peaks["plain.flac"] + 50, peaks


def test_size_limit(model, monkeypatch):
    with pytest.raises(BadAudioError, match=r"^big\.wav: is 2\.0 MB, over the 1 MB upload limit"):
        app_core.analyse(b"\0" * (2 << 20), "big.wav", model, 600.0, max_bytes=1 << 20)
    assert app_core.upload_limit_mb(load_settings()) == app_core.DEFAULT_UPLOAD_MB
    monkeypatch.setattr(app_core, "upload_limit_mb", lambda settings: 1)  # as a config key would set it
    at = upload(app(), "big.wav", b"\0" * (2 << 20))
    assert [e.value for e in at.error] == ["big.wav: is 2.0 MB, over the 1 MB upload limit; upload a shorter "
                                           "clip, or compress it as FLAC"]
    assert "Limits: 1 MB per upload" in at.sidebar.caption[-1].value


def test_a_bad_model_is_a_message_in_the_page(tmp_path):
    at = app("--model", str(tmp_path / "nowhere"))
    assert len(at.error) == 1 and "no such directory" in at.error[0].value
    assert not at.exception and not at.file_uploader


# ---- caching, the model, the sidebar --------------------------------------------------------------

def test_results_are_cached_per_file_hash_and_the_model_loads_once(tmp_path, monkeypatch):
    loads, analyses = [], []
    real_load, real_analyse = EmotionModel.load.__func__, app_core.analyse
    monkeypatch.setattr(EmotionModel, "load", classmethod(lambda cls, *a, **k: loads.append(a) or real_load(cls, *a, **k)))
    monkeypatch.setattr(app_core, "analyse", lambda *a, **k: analyses.append(a[1]) or real_analyse(*a, **k))
    clip = write(tmp_path / "c.wav", speechlike(3.0, SR, seed=12)).read_bytes()
    other = write(tmp_path / "d.wav", speechlike(3.0, SR, seed=13)).read_bytes()
    first = upload(app(), "c.wav", clip)
    second = upload(app(), "c.wav", clip)  # another session, the same file
    second.run()  # a rerun
    assert page_result(first) == page_result(second)
    assert analyses == ["c.wav"] and len(loads) == 1
    upload(second, "d.wav", other)
    assert analyses == ["c.wav", "d.wav"] and len(loads) == 1


def test_sidebar_describes_the_model(model):
    at = app()
    b = model.bundle
    text = "\n".join(m.value for m in at.sidebar.markdown)
    assert b.name in text and f"`{app_core.conversion_mode(b)}`" in text and b.tflite_sha256[:16] in text
    assert ", ".join(f"`{label}`" for label in b.labels) in text
    metrics = b.info["training"]["metrics"]
    first = "cv" if "cv" in metrics else "test"  # cross-validated figures lead where the bundle has them
    ua = metrics[first]["all"]["unweighted_accuracy"]
    assert [m.value for m in at.sidebar.metric] == [f"{ua:.1%}"]
    actors = metrics[first]["all"].get("actors") or b.info["training"]["split"][first]["actors"]
    assert " ".join(actors) in text
    assert at.info  # the invitation to upload


def test_another_bundle_with_model_flag():
    at = app("--model", str(TINY_INT8))
    text = "\n".join(m.value for m in at.sidebar.markdown)
    assert "tiny_int8" in text and "`int8`" in text
    assert any("no accuracy figures" in c.value for c in at.sidebar.caption)


# ---- app_core -------------------------------------------------------------------------------------

def test_spectrogram_image_orientation_and_size(model):
    p = model.bundle.features
    t = np.arange(SR * 3) / SR
    low = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)  # energy in the lowest mel bands
    mels, _ = model.frontend.frames(low)
    image, (lo, hi) = app_core.spectrogram_image(mels, p.floor_db)
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert image.shape[0] == p.n_mels * app_core.SPECTROGRAM_ROW_SCALE
    assert image.shape[1] >= app_core.SPECTROGRAM_MIN_WIDTH
    assert lo == p.floor_db and hi == pytest.approx(float(mels.max()))
    bottom, top = image[-20:].astype(float).mean(), image[:20].astype(float).mean()
    assert bottom > top + 50  # low frequencies at the bottom, bright
    long = np.tile(mels, (40, 1))  # two minutes of frames
    image, _ = app_core.spectrogram_image(long, p.floor_db)
    assert image.shape[1] <= app_core.SPECTROGRAM_MAX_COLUMNS


def test_accepted_extensions_are_what_soundfile_reads():
    ext = app_core.accepted_extensions()
    assert {"wav", "flac", "ogg"} <= set(ext)
    assert ("mp3" in ext) == ("MP3" in sf.available_formats())


def test_model_metrics_reads_what_the_bundle_has(model):
    metrics = model.bundle.info["training"]["metrics"]
    first = "cv" if "cv" in metrics else "test"
    rows = app_core.model_metrics(model.bundle)
    assert [(r.split, r.subset) for r in rows][:3] == [(first, "all"), (first, "speech"), (first, "song")]
    head = app_core.headline_metric(model.bundle)
    assert head.split == first and head.subset == "all" and head.clips == metrics[first]["all"]["clips"]
    assert app_core.model_metrics(EmotionModel.load(TINY_INT8).bundle) == []


def test_streamlit_command_and_cli_errors(tmp_path):
    cmd = app_core.streamlit_command(str(TINY_INT8), 8600, "127.0.0.1")
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    for flag, value in (("--server.address", "127.0.0.1"), ("--server.port", "8600"), ("--server.headless", "true"),
                        ("--browser.gatherUsageStats", "false"),
                        ("--server.maxUploadSize", str(app_core.DEFAULT_UPLOAD_MB))):
        assert cmd[cmd.index(flag) + 1] == value
    assert cmd[-3:] == ["--", "--model", str(TINY_INT8.resolve())]
    assert "--" not in app_core.streamlit_command(None, 8501, "127.0.0.1")
    # What fails before streamlit starts is one line and the project's exit code.
    proc = run_moodmic("app", "--model", str(tmp_path / "nowhere"), "--port", "8999")
    assert proc.returncode == 78 and "no such directory" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_moodmic("app", "--port", "70000")
    assert proc.returncode == 2 and "--port 70000 is out of range" in proc.stderr
    assert "--address" in run_moodmic("app", "--help").stdout


def test_concurrent_sessions_share_the_model_safely(model):
    """Streamlit runs every browser session in its own thread, all on one interpreter."""
    from concurrent.futures import ThreadPoolExecutor

    clips = [(f"c{i}.wav", write_bytes(speechlike(6.0, SR, seed=20 + i))) for i in range(6)]
    alone = [app_core.analyse(data, name, model, 600.0).result for name, data in clips]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda c: app_core.analyse(c[1], c[0], model, 600.0).result, clips * 3))
    assert together == alone * 3


def write_bytes(audio: np.ndarray, rate: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
