"""Bad input where it enters: the audio loader and the frontend never fail with anything but our errors.

Hypothesis runs with a fixed example budget and derandomized, so CI is repeatable.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.audio import load_audio
from edge.errors import MoodmicError
from edge.features import FeatureParams, FeatureStream, Frontend, file_windows

from conftest import SR, speechlike

BUDGET = settings(max_examples=150, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FE = Frontend(FeatureParams())


def wav_bytes(audio: np.ndarray, rate: int = SR, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


VALID_WAV = wav_bytes(speechlike(0.5))
VALID_FLAC = wav_bytes(speechlike(0.5), fmt="FLAC", subtype="PCM_16")


def load_or_our_error(tmp_path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    try:
        audio = load_audio(path, SR, max_seconds=60)
    except MoodmicError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) > 0 and np.all(np.isfinite(audio))


@BUDGET
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ""]))
def test_random_bytes(tmp_path, data, suffix):
    load_or_our_error(tmp_path, data, suffix)


@BUDGET
@given(base=st.sampled_from([VALID_WAV, VALID_FLAC]), cut=st.integers(0, 20000),
       flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8))
def test_damaged_headers_and_truncations(tmp_path, base, cut, flips):
    data = bytearray(base[: max(0, len(base) - cut)])
    for pos, value in flips:  # the header lives in the first bytes
        if pos < len(data):
            data[pos] = value
    load_or_our_error(tmp_path, bytes(data), ".wav")


@BUDGET
@given(rate=st.integers(1, 200_000), channels=st.integers(1, 8), frames=st.integers(0, 4000),
       subtype=st.sampled_from(["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]))
def test_odd_but_valid_formats(tmp_path, rate, channels, frames, subtype):
    audio = np.random.default_rng(frames).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)
    try:
        data = wav_bytes(audio, rate, subtype)
    except (sf.LibsndfileError, ValueError, RuntimeError):
        return  # soundfile itself cannot write it: nothing to read
    load_or_our_error(tmp_path, data, ".wav")


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@BUDGET
@given(values=st.lists(finite_or_not, max_size=3000), scale=st.sampled_from([0.0, 1e-6, 1.0, 1e6]))
def test_frontend_takes_any_samples(values, scale):
    with np.errstate(all="ignore"):
        audio = np.asarray(values, np.float32) * np.float32(scale)
        mels, ms = FE.frames(audio)
        windows = file_windows(FE, audio, 50)
    assert mels.shape == (FE.n_frames_for(len(audio)), 128) and len(ms) == len(mels)
    assert len(windows) >= 1 and windows[0].features.shape == (130, 128)
    finite = np.all(np.isfinite(audio))
    if finite:
        assert np.all(np.isfinite(windows[0].features)) and np.all(windows[0].features >= -80.0)


@BUDGET
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=30))
def test_stream_matches_batch_for_any_chunking(sizes):
    audio = speechlike(sum(sizes) / SR + 0.01, seed=len(sizes))[: sum(sizes)]
    stream, got, at = FeatureStream(FE, 25), [], 0
    for n in sizes:
        got += stream.push(audio[at : at + n])
        at += n
    batch = [w for w in file_windows(FE, audio, 25)] if len(audio) >= FeatureParams().window_samples else []
    assert len(got) == len(batch)
    assert all(np.array_equal(a.features, b.features) for a, b in zip(got, batch))
