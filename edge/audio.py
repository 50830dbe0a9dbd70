"""Reading audio files into what the frontend takes: mono float32 at the model's sample rate.

Odd but valid files are converted (any channel count, 8/16/24/32-bit or float, 8-192 kHz);
files that cannot be used raise BadAudioError naming the file, the problem and the fix.
Resampling uses soxr: high quality, a small wheel on every platform the Pi uses, and a
streaming API (state kept across chunks) for the microphone; the RAVDESS copy we train on
was itself resampled with soxr.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import BadAudioError, MissingInputError

MIN_SAMPLE_RATE = 8000  # hertz; below this there is too little of the speech band left
# libsndfile reads a cut-off WAV without complaint, but its header report says "data : N (should be M)".
_WAV_SHORT = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_WAV_SIZE = 0x7FFF0000  # arecord & co. write 0x7FFFFFFF/0xFFFFFFFF when the length is unknown


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array into float32 mono."""
    data = np.asarray(data, dtype=np.float32)
    return data if data.ndim == 1 else data.mean(axis=1, dtype=np.float32)


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Whole-signal resampling (soxr 'HQ')."""
    if rate == target_rate:
        return np.asarray(audio, np.float32)
    return soxr.resample(audio, rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def check_samples(audio: np.ndarray, name: str) -> None:
    """Refuse sample data no result could be honest about."""
    if audio.size == 0:
        raise BadAudioError(f"{name}: contains no samples; record or choose a file with speech in it")
    if not np.all(np.isfinite(audio)):
        raise BadAudioError(f"{name}: contains NaN or infinite samples; re-export it as PCM WAV or FLAC")
    if not np.any(audio):
        raise BadAudioError(
            f"{name}: is exact digital silence (every sample is 0); check that the microphone or "
            "recording actually captured sound"
        )


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """Open an audio file after the checks that need no decoding (exists, not empty, a format
    soundfile reads, a complete WAV header, a usable rate). The caller closes it."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise MissingInputError(f"{name}: no such file; check the path")
    if path.is_dir():
        raise MissingInputError(f"{name}: is a directory, not an audio file; give the file's path")
    if path.stat().st_size == 0:
        raise BadAudioError(f"{name}: is empty (0 bytes); the recording or copy did not complete")
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        detail = getattr(exc, "error_string", str(exc))
        raise BadAudioError(f"{name}: not an audio file soundfile can read ({detail}); use WAV or FLAC") from exc
    short = _WAV_SHORT.search(f.extra_info)
    problem = None
    if short and int(short.group(2)) < int(short.group(1)) < _STREAMING_WAV_SIZE:
        problem = (f"{name}: truncated (header promises {short.group(1)} bytes of audio, file holds "
                   f"{short.group(2)}); re-copy or re-record the file")
    elif f.samplerate < MIN_SAMPLE_RATE:
        problem = f"{name}: sample rate {f.samplerate} Hz is below {MIN_SAMPLE_RATE} Hz; record at 16 kHz or more"
    if problem:
        f.close()
        raise BadAudioError(problem)
    return f


def read_block(f: sf.SoundFile, frames: int = -1) -> np.ndarray:
    """Up to `frames` frames (all with -1) as (n, channels) float32; decoding damage is BadAudioError."""
    try:
        return f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        detail = getattr(exc, "error_string", str(exc))
        raise BadAudioError(f"{f.name}: corrupt or truncated audio ({detail}); re-copy or re-export the file") from exc


def load_audio(path: str | os.PathLike, target_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Read a file soundfile can read (WAV, FLAC, OGG, ...) as mono float32 at `target_rate`."""
    name = str(path)
    with open_audio(path) as f:
        rate, expected = f.samplerate, f.frames
        if max_seconds is not None and expected / rate > max_seconds:
            raise BadAudioError(
                f"{name}: is {expected / rate:.1f} s long, over the {max_seconds:g} s limit; "
                "trim it or raise audio.max_file_seconds"
            )
        data = read_block(f)
    if len(data) < expected:
        raise BadAudioError(
            f"{name}: truncated (header promises {expected} frames, file holds {len(data)}); re-copy the file"
        )
    audio = to_mono(data)
    check_samples(audio, name)
    return resample(audio, rate, target_rate)
