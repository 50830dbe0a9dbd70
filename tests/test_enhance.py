"""The WebRTC front end (edge.enhance): part of the features, the same in stream and batch, carried by the bundle."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from edge.bundle import load_bundle, write_bundle
from edge.enhance import CHUNK, Enhancer
from edge.errors import BundleError
from edge.features import FeatureParams, Frontend, file_windows, rms_dbfs
from edge.model import EmotionModel
from edge.predict import predict_audio

from conftest import FIXTURES, SR, run_moodmic, speechlike, write

WEBRTC = FeatureParams(webrtc_noise_suppression=2, webrtc_auto_gain_dbfs=5)
FE = Frontend(WEBRTC)
PLAIN = Frontend(FeatureParams())


def noisy_speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (speechlike(seconds, seed=seed, level=0.05) + 0.01 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def test_an_enhanced_frontend_hears_other_windows_than_the_plain_one():
    """(Stream == batch with enhancement: tests/test_features.py.)"""
    audio = noisy_speech(6.3, seed=3)
    hop = WEBRTC.hop_frames(1.0)
    enhanced, plain = file_windows(FE, audio, hop), file_windows(PLAIN, audio, hop)
    assert len(enhanced) == len(plain) >= 3
    assert all(not np.allclose(a.features, b.features, atol=1.0) for a, b in zip(enhanced, plain))


def test_enhancer_output_is_every_whole_chunk_whatever_the_push_sizes():
    audio = noisy_speech(2.0, seed=1)[: 3 * SR // 2 + 37]  # ends mid-chunk
    whole = Enhancer(2, 5).process(audio)
    assert len(whole) == len(audio) // CHUNK * CHUNK
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(len(audio), 40, replace=False))
    enhancer = Enhancer(2, 5)
    parts = [enhancer.process(piece) for piece in np.split(audio, cuts)]
    assert np.array_equal(np.concatenate(parts), whole)


def test_noise_suppression_lowers_stationary_noise():
    noise = (0.01 * np.random.default_rng(2).standard_normal(4 * SR)).astype(np.float32)  # about -40 dBFS
    plain_ms = PLAIN.frames(noise)[1][-50:]
    suppressed = Frontend(FeatureParams(webrtc_noise_suppression=3)).frames(Enhancer(3, 0).process(noise))[1][-50:]
    assert rms_dbfs(suppressed) < rms_dbfs(plain_ms) - 6.0


def test_automatic_gain_lifts_quiet_speech():
    quiet = speechlike(6.0, seed=5, level=0.003)  # far speech, about -55 dBFS
    hop = WEBRTC.hop_frames(1.0)
    plain = file_windows(PLAIN, quiet, hop)[-1].rms_dbfs
    gained = file_windows(Frontend(FeatureParams(webrtc_auto_gain_dbfs=5)), quiet, hop)[-1].rms_dbfs
    assert gained > plain + 3.0


def test_features_block_round_trip_and_refusals():
    plain = FeatureParams().to_dict()
    assert not any(k.startswith("webrtc") for k in plain)  # bundles without enhancement read as before
    assert FeatureParams.from_dict(plain) == FeatureParams() and not FeatureParams().enhanced
    assert FeatureParams.from_dict(WEBRTC.to_dict()) == WEBRTC and WEBRTC.enhanced
    for key, value in (("webrtc_noise_suppression", 5), ("webrtc_auto_gain_dbfs", 40), ("webrtc_noise_suppression", 1.5)):
        with pytest.raises(BundleError, match=key):
            FeatureParams.from_dict({**WEBRTC.to_dict(), key: value})
    with pytest.raises(BundleError, match="16000 only"):
        FeatureParams.from_dict({**WEBRTC.to_dict(), "sample_rate": 8000, "fmax": 4000.0})


def test_a_missing_package_fails_at_load_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "webrtc_noise_gain", None)
    Frontend(FeatureParams())  # a plain bundle never needs it
    with pytest.raises(BundleError, match="webrtc-noise-gain package is missing; pip install"):
        Frontend(WEBRTC)


def test_a_bundle_with_enhancement_is_served_enhanced(tmp_path):
    """predict (and so the daemon's FeatureStream, the page and every figure) hears what the bundle names."""
    tiny = load_bundle(FIXTURES / "tiny_float")
    tflite = tiny.tflite_path.read_bytes()
    out = tmp_path / "enhanced"
    write_bundle(out, tflite, name="tiny-webrtc", labels=tiny.labels, features=WEBRTC, output_kind=tiny.output_kind)
    enhanced = EmotionModel.load(out)
    assert enhanced.bundle.features == WEBRTC
    shutil.copytree(FIXTURES / "tiny_float", tmp_path / "plain")
    plain = EmotionModel.load(tmp_path / "plain")
    audio = noisy_speech(5.0, seed=7)
    hop = enhanced.bundle.eval_hop_frames
    got = predict_audio(audio, enhanced.frontend, hop, enhanced.probabilities, enhanced.labels)
    by_hand = enhanced.probabilities(np.stack([w.features for w in file_windows(FE, audio, hop)])).mean(axis=0)
    assert np.allclose([got.probabilities[k] for k in enhanced.labels], by_hand, atol=1e-4)  # JSON rounding
    unenhanced = predict_audio(audio, plain.frontend, hop, plain.probabilities, plain.labels)
    assert not np.allclose([got.probabilities[k] for k in enhanced.labels],
                           [unenhanced.probabilities[k] for k in plain.labels], atol=1e-3)


def test_the_daemon_hears_what_predict_hears_with_an_enhanced_bundle(tmp_path):
    """`moodmic run` (the enhancer over the whole stream, after capture resampling) gives predict's windows."""
    tiny = load_bundle(FIXTURES / "tiny_int8")
    out = tmp_path / "enhanced"
    write_bundle(out, tiny.tflite_path.read_bytes(), name="tiny-webrtc", labels=tiny.labels, features=WEBRTC,
                 output_kind=tiny.output_kind)
    rate = 44100  # resampled at capture and at loading alike
    noise = 0.01 * np.random.default_rng(3).standard_normal(int(7.3 * rate))
    wav = write(tmp_path / "a.wav", (speechlike(7.3, sr=rate, seed=3, level=0.05) + noise).astype(np.float32), rate)
    raw = run_moodmic("run", "--model", str(out), "--source", f"file:{wav}", "--fast", "--mqtt", "off", "--raw")
    assert raw.returncode == 0, raw.stderr
    predicted = run_moodmic("predict", "--windows", "--model", str(out), str(wav))
    windows = [json.loads(line) for line in raw.stdout.splitlines()]
    assert windows == json.loads(predicted.stdout)["per_window"] and len(windows) == 5
    plain = run_moodmic("predict", "--windows", "--model", str(FIXTURES / "tiny_int8"), str(wav))
    assert [w["rms_dbfs"] for w in windows] != [w["rms_dbfs"] for w in json.loads(plain.stdout)["per_window"]]
