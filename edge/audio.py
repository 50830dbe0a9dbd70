"""Reading audio files into what the frontend takes: mono float32 at the model's sample rate.

Odd but valid files are converted (any channel count, 8/16/24/32-bit or float, 8-192 kHz);
files that cannot be used raise BadAudioError naming the file, the problem and the fix.
A file is decoded block by block, each block downmixed and resampled before the next is read,
so memory is the 16 kHz mono result plus one block whatever the file declares (a 1 MB FLAC can
declare gigabytes of samples). A file may be a path or a binary file object (an upload, decoded
from memory and never written to disk).
Resampling uses soxr: high quality, a small wheel on every platform the Pi uses, and a
streaming API (state kept across chunks; its output equals the one-shot resampler's, bit for
bit); the RAVDESS copy we train on was itself resampled with soxr.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from .errors import BadAudioError, MissingInputError

MIN_SAMPLE_RATE = 8000  # hertz; below this there is too little of the speech band left
MAX_SAMPLE_RATE = 192000  # hertz; the top of the documented range, and of the work one second may cost
MAX_FLOAT_SAMPLE = 1000.0  # float files may clip past +-1.0; far beyond it they are not scaled as audio
BLOCK_SAMPLES = 1 << 20  # samples (all channels) decoded at once: 4 MB of float32
# libsndfile reads a cut-off WAV without complaint, but its header report says "data : N (should be M)".
_WAV_SHORT = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_WAV_SIZE = 0x7FFF0000  # arecord & co. write 0x7FFFFFFF/0xFFFFFFFF when the length is unknown
_RANGE = f"moodmic reads {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"

AudioInput = str | os.PathLike[str] | BinaryIO  # a path, or a binary file object such as io.BytesIO


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array into float32 mono."""
    data = np.asarray(data, dtype=np.float32)
    return data if data.ndim == 1 else data.mean(axis=1, dtype=np.float32)


class Resampler:
    """Streaming resampler (soxr 'HQ') that keeps its state across chunks (no clicks at chunk edges)."""

    def __init__(self, rate: int, target: int):
        self._stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ") if rate != target else None

    def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        return mono if self._stream is None else self._stream.resample_chunk(mono, last=last)


def input_name(source: AudioInput, name: str | None = None) -> str:
    """What messages call the input: `name` if given, else the path (a file object has none: 'upload')."""
    return name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "upload")


def _size(source: AudioInput, name: str) -> int:
    if not isinstance(source, (str, os.PathLike)):
        start = source.tell()
        size = source.seek(0, io.SEEK_END) - start
        source.seek(start)
        return size
    path = Path(source)
    if not path.exists():
        raise MissingInputError(f"{name}: no such file; check the path")
    if path.is_dir():
        raise MissingInputError(f"{name}: is a directory, not an audio file; give the file's path")
    return path.stat().st_size


def open_audio(source: AudioInput, name: str | None = None) -> sf.SoundFile:
    """Open an audio file (a path or a binary file object) after the checks that need no decoding
    (exists, not empty, a format soundfile reads, a complete WAV header, a usable rate). The caller
    closes it. `name`: what messages call it (default: the path)."""
    name = input_name(source, name)
    if _size(source, name) == 0:
        raise BadAudioError(f"{name}: is empty (0 bytes); the recording or copy did not complete")
    try:
        f = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        detail = getattr(exc, "error_string", str(exc))
        raise BadAudioError(f"{name}: not an audio file soundfile can read ({detail}); use WAV or FLAC") from exc
    short = _WAV_SHORT.search(f.extra_info)
    problem = None
    if f.format == "RAW":  # no header: libsndfile guessed 8 kHz u-law from a .au/.snd name, which a file object lacks
        problem = f"{name}: not an audio file soundfile can read (no audio header); use WAV or FLAC"
    elif short and int(short.group(2)) < int(short.group(1)) < _STREAMING_WAV_SIZE:
        problem = (f"{name}: truncated (header promises {short.group(1)} bytes of audio, file holds "
                   f"{short.group(2)}); re-copy or re-record the file")
    elif f.samplerate < MIN_SAMPLE_RATE:
        problem = f"{name}: sample rate {f.samplerate} Hz is below {MIN_SAMPLE_RATE} Hz ({_RANGE}); record at 16 kHz or more"
    elif f.samplerate > MAX_SAMPLE_RATE:
        problem = (f"{name}: sample rate {f.samplerate} Hz is above {MAX_SAMPLE_RATE} Hz ({_RANGE}); "
                   "resample it to 16-48 kHz")
    if problem:
        f.close()
        raise BadAudioError(problem)
    return f


def read_block(f: sf.SoundFile, frames: int = -1, name: str | None = None) -> np.ndarray:
    """Up to `frames` frames (all with -1) as (n, channels) float32; decoding damage is BadAudioError."""
    try:
        return f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        detail = getattr(exc, "error_string", str(exc))
        raise BadAudioError(f"{name or f.name}: corrupt or truncated audio ({detail}); re-copy or re-export the file") from exc


def block_peak(block: np.ndarray, name: str) -> float:
    """The block's largest magnitude, after refusing samples no result could be honest about."""
    peak = float(np.max(np.abs(block))) if block.size else 0.0
    if not np.isfinite(peak):  # np.max propagates NaN
        raise BadAudioError(f"{name}: contains NaN or infinite samples; re-export it as PCM WAV or FLAC")
    if peak > MAX_FLOAT_SAMPLE:
        raise BadAudioError(f"{name}: float samples out of range (peak {peak:.3g}, over {MAX_FLOAT_SAMPLE:g}); "
                            "scale the file to +-1.0 or re-export it as PCM WAV or FLAC")
    return peak


def _too_long(name: str, length: str, max_seconds: float) -> BadAudioError:
    return BadAudioError(f"{name}: {length}, over the {max_seconds:g} s limit; trim it or raise audio.max_file_seconds")


def load_audio(source: AudioInput, target_rate: int, max_seconds: float | None = None,
               name: str | None = None) -> np.ndarray:
    """Read a file soundfile can read (WAV, FLAC, OGG, ...; a path or a binary file object) as mono
    float32 at `target_rate`, block by block. `name`: what messages call it (default: the path)."""
    name = input_name(source, name)
    with open_audio(source, name) as f:
        rate, expected = f.samplerate, f.frames
        if max_seconds is not None and expected / rate > max_seconds:
            raise _too_long(name, f"is {expected / rate:.1f} s long", max_seconds)
        resample, out, frames, peak = Resampler(rate, target_rate), [], 0, 0.0
        step = max(1, BLOCK_SAMPLES // f.channels)
        while len(block := read_block(f, step, name)):
            frames += len(block)
            # Counted while decoding too: soundfile stops at the declared frames today; a reader that
            # trusted the data over the header would still stop here.
            if max_seconds is not None and frames > max_seconds * rate:
                raise _too_long(name, f"is longer than its header says ({expected / rate:.1f} s)", max_seconds)
            peak = max(peak, block_peak(block, name))
            out.append(resample(to_mono(block)))
    if frames < expected:
        raise BadAudioError(
            f"{name}: truncated (header promises {expected} frames, file holds {frames}); re-copy the file"
        )
    if frames == 0:
        raise BadAudioError(f"{name}: contains no samples; record or choose a file with speech in it")
    if peak == 0:
        raise BadAudioError(
            f"{name}: is exact digital silence (every sample is 0); check that the microphone or "
            "recording actually captured sound"
        )
    out.append(resample(np.zeros(0, np.float32), last=True))
    return np.concatenate(out)
