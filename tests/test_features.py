"""The one frontend: librosa parity, stream == batch, padding means silence."""

from __future__ import annotations

import numpy as np
import pytest

from edge.audio import load_audio
from edge.features import FeatureParams, FeatureStream, Frontend, file_windows, rms_dbfs

from conftest import SR, ravdess_clips, speechlike

P = FeatureParams()
FE = Frontend(P)
WEBRTC = FeatureParams(webrtc_noise_suppression=2, webrtc_auto_gain_dbfs=5)


def librosa_logmel(audio: np.ndarray, p: FeatureParams = P) -> np.ndarray:
    librosa = pytest.importorskip("librosa", reason="librosa (train extra) is the reference")
    mel = librosa.feature.melspectrogram(
        y=audio, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, win_length=p.n_fft, window="hann",
        center=False, power=2.0, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax, htk=False, norm="slaney",
    )
    db = librosa.power_to_db(mel, ref=p.ref_power, amin=p.amin, top_db=None)
    return np.maximum(db, p.floor_db).T  # (time, mel)


def synthetic_signals() -> dict[str, np.ndarray]:
    t = np.arange(3 * SR) / SR
    rng = np.random.default_rng(1)
    return {
        "tone_440": 0.5 * np.sin(2 * np.pi * 440 * t),
        "tone_3k_quiet": 0.001 * np.sin(2 * np.pi * 3000 * t),
        "chirp": 0.4 * np.sin(2 * np.pi * (50 * t + 7900 / 6 * t**2)),
        "silence": np.zeros_like(t),
        "clipped_noise": np.clip(2.0 * rng.standard_normal(len(t)), -1, 1),
        "speechlike": speechlike(3.0),
    }


@pytest.mark.parametrize("name", list(synthetic_signals()))
def test_matches_librosa_on_synthetic_audio(name):
    audio = synthetic_signals()[name].astype(np.float32)
    mels, _ = FE.frames(audio)
    ref = librosa_logmel(audio)
    assert mels.shape == ref.shape == (FE.n_frames_for(len(audio)), P.n_mels)
    assert np.max(np.abs(mels - ref)) < 1e-3


def test_matches_librosa_on_real_ravdess_clips(ravdess):
    clips = ravdess_clips(ravdess, 24)
    worst = 0.0
    for path in clips:
        audio = load_audio(path, SR)
        for w in file_windows(FE, audio, P.hop_frames(1.0)):  # the same 130-frame segments the model sees
            start = w.start_frame * P.hop_length
            ref = librosa_logmel(audio[start : start + P.window_samples])
            assert ref.shape == w.features.shape == (P.n_frames, P.n_mels)
            worst = max(worst, float(np.max(np.abs(w.features - ref))))
    assert worst < 1e-3, f"max abs difference {worst} dB"


@pytest.mark.parametrize("frontend", [FE, Frontend(WEBRTC)], ids=["plain", "webrtc"])
@pytest.mark.parametrize("chunk", [1, 7, 160, 1000, 16000])
def test_streaming_equals_batch_for_any_chunk_size(chunk, frontend):
    """With a bundle's WebRTC front end too (edge.enhance): one processor over the stream, a fresh one per file."""
    audio = speechlike(6.3, seed=3)
    hop = P.hop_frames(1.0)
    batch = file_windows(frontend, audio, hop)
    stream = FeatureStream(frontend, hop)
    got = []
    for i in range(0, len(audio), chunk):
        got += stream.push(audio[i : i + chunk])
    assert len(got) == len(batch) == (FE.n_frames_for(len(audio)) - P.n_frames) // hop + 1
    for a, b in zip(got, batch):
        assert a.index == b.index and a.start_frame == b.start_frame
        assert np.array_equal(a.features, b.features)
        assert a.rms_dbfs == b.rms_dbfs and a.start_s == b.start_s and a.end_s == b.end_s
    # the windows carry the audio, not a constant: consecutive windows differ
    assert all(not np.array_equal(a.features, b.features) for a, b in zip(got, got[1:]))


def test_stream_computes_only_new_frames_and_keeps_bounded_state():
    stream = FeatureStream(FE, P.hop_frames(1.0))
    audio = speechlike(30.0, seed=4)
    for i in range(0, len(audio), SR):
        stream.push(audio[i : i + SR])
        assert len(stream._mels) <= P.n_frames  # only what the next window still needs
    assert stream.frames_seen == FE.n_frames_for(len(audio))


def test_window_geometry():
    assert P.window_samples == 129 * 320 + 1024
    assert P.hop_frames(1.0) == 50 and P.hop_frames(0.5) == 25
    with pytest.raises(ValueError, match="whole number"):
        P.hop_frames(0.33)
    windows = file_windows(FE, speechlike(5.0), 50)
    assert [w.start_s for w in windows] == [0.0, 1.0, 2.0]
    assert windows[0].end_s == pytest.approx(P.window_seconds)


def test_short_clip_is_padded_once_with_silence_at_the_floor():
    audio = speechlike(1.0)
    windows = file_windows(FE, audio, 50)
    assert len(windows) == 1
    w = windows[0].features
    assert w.shape == (P.n_frames, P.n_mels)
    speech_frames = FE.n_frames_for(len(audio))
    assert np.all(w[speech_frames + 4 :] == P.floor_db)  # frames wholly past the audio are the floor
    assert np.mean(w[:speech_frames]) > P.floor_db + 20  # the speech is still there


def test_digital_silence_is_the_floor_and_rms_is_finite():
    mels, ms = FE.frames(np.zeros(P.window_samples, np.float32))
    assert np.all(mels == P.floor_db)
    assert rms_dbfs(ms) == -120.0


def test_rms_dbfs_reference_levels():
    t = np.arange(P.window_samples) / SR
    _, ms = FE.frames(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    assert rms_dbfs(ms) == pytest.approx(-3.01, abs=0.05)  # full-scale sine
    _, ms = FE.frames(0.01 * np.sign(np.sin(2 * np.pi * 100 * t)).astype(np.float32))
    assert rms_dbfs(ms) == pytest.approx(-40.0, abs=0.05)


def test_loudness_moves_the_features_in_absolute_db():
    """An absolute floor, not a per-window top_db: 20 dB quieter audio is 20 dB lower."""
    audio = speechlike(3.0)
    loud, _ = FE.frames(audio)
    quiet, _ = FE.frames(audio * 0.1)
    above = (quiet > P.floor_db + 1) & (loud > P.floor_db + 21)
    assert above.mean() > 0.5
    assert np.allclose(loud[above] - quiet[above], 20.0, atol=0.01)
