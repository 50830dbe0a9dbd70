"""The one log-mel frontend, shared by trainer, converter, daemon and web page.

It is defined on a stream: frame i covers samples [i*hop, i*hop + n_fft) of the audio stream
(`center=False`), each frame becomes 128 log-mel values with an absolute dB floor, and a model
window is `n_frames` consecutive frames. Because nothing depends on where a window starts, the
device computes only the new frames at each hop, and a file gives exactly the windows a device
listening to it would give. It matches librosa's `melspectrogram` + `power_to_db(ref=1, top_db=None)`
clamped at the floor (a test proves it) without importing librosa.

Each frame also carries its mean square (unwindowed), so a window's loudness (`rms_dbfs`) is
the mean of its frames' mean squares: the same in batch and stream.

A bundle may put WebRTC noise suppression and automatic gain in front (edge.enhance, the
`webrtc_*` parameters): then every path here hears the enhanced stream, from its first sample.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BundleError, shown

if TYPE_CHECKING:
    from .enhance import Enhancer

FEATURE_VERSION = 1
RMS_FLOOR_DBFS = -120.0  # reported for exact digital silence instead of -inf
CHUNK_FRAMES = 2048  # frames per FFT batch (41 s at 20 ms): bounds the memory of a long clip's frontend
_POWER_CAP = float(np.finfo(np.float32).max) / 4096  # a mel band sums far fewer bins than this

# What this frontend computes, the one table of it: every numeric parameter's range (inclusive). A bundle outside
# it is refused naming the key, never computed (n_fft 2**40 asked numpy for 8 TiB, 2**20 for 2.7 GB of
# filterbank). Between parameters: fmin < fmax <= sample_rate / 2, hop_length <= n_fft <= MAX_OVERLAP * hop_length
# and a window of at most MAX_WINDOW_SECONDS.
LIMITS: dict[str, tuple[float, float]] = {
    "sample_rate": (8000, 48000),  # telephone to studio; capture is resampled to it
    "n_fft": (64, 8192),  # the filterbank is n_mels x (n_fft/2 + 1) floats
    "hop_length": (8, 8192),
    "n_mels": (8, 512),
    "fmin": (0.0, 24000.0),
    "fmax": (1.0, 24000.0),
    "ref_power": (1e-10, 1e10),
    "amin": (1e-20, 1e-2),
    "floor_db": (-200.0, 0.0),
    "n_frames": (1, 4096),
    "webrtc_noise_suppression": (0, 4),  # WebRTC's levels; 0: off
    "webrtc_auto_gain_dbfs": (0, 31),  # WebRTC's adaptive digital gain; 0: off
}
# Enhancement keys: a bundle without them has none (every bundle written before they existed), and they are
# written only when on, so a plain frontend's parameters (and its feature cache) stay as they were.
ENHANCEMENT = ("webrtc_noise_suppression", "webrtc_auto_gain_dbfs")
MAX_OVERLAP = 8  # frames per hop covering a sample: a clip's frames cost at most 8 times its samples
MAX_WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class FeatureParams:
    """Every parameter of the frontend; all of them travel in the model bundle."""

    feature_version: int = FEATURE_VERSION
    sample_rate: int = 16000  # hertz, mono
    n_fft: int = 1024  # samples per frame (64 ms); the Hann window spans the whole frame
    hop_length: int = 320  # samples between frames (20 ms); divides every daemon hop of 20 ms steps
    window: str = "hann"  # periodic Hann, as librosa/scipy `get_window("hann", n, fftbins=True)`
    n_mels: int = 128
    fmin: float = 0.0  # hertz
    fmax: float = 8000.0  # hertz
    mel_scale: str = "slaney"  # librosa's default (htk=False), with Slaney area normalisation
    ref_power: float = 1.0  # 0 dB = mel power 1.0 (a full-scale sine reaches about +42 dB)
    amin: float = 1e-10
    floor_db: float = -80.0  # absolute floor: 16-bit quantisation noise sits at about -79 dB
    n_frames: int = 130  # frames per model window (2.644 s at the defaults)
    # Speech enhancement in front of the frontend (edge.enhance), part of the features: a model hears what it
    # was trained on. Both 0: none.
    webrtc_noise_suppression: int = 0
    webrtc_auto_gain_dbfs: int = 0

    @property
    def enhanced(self) -> bool:
        return bool(self.webrtc_noise_suppression or self.webrtc_auto_gain_dbfs)

    def enhancer(self) -> Enhancer | None:
        """A fresh edge.enhance.Enhancer for a stream or clip, or None without enhancement."""
        if not self.enhanced:
            return None
        from .enhance import Enhancer

        return Enhancer(self.webrtc_noise_suppression, self.webrtc_auto_gain_dbfs)

    @property
    def window_samples(self) -> int:
        """Samples spanned by one model window."""
        return (self.n_frames - 1) * self.hop_length + self.n_fft

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    def hop_frames(self, hop_seconds: float) -> int:
        """Frames per decision hop; the hop must be a whole number of frames."""
        frames = hop_seconds * self.sample_rate / self.hop_length
        if frames < 1 or abs(frames - round(frames)) > 1e-6:
            step = self.hop_length / self.sample_rate
            raise ValueError(
                f"hop of {hop_seconds} s is not a whole number of {step * 1000:g} ms frames; "
                f"use a multiple of {step:g} s"
            )
        return int(round(frames))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ENHANCEMENT or v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureParams:
        """Parse the bundle's `features` block; refuse what this frontend cannot compute."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        missing = sorted(known - set(data) - set(ENHANCEMENT))
        if unknown or missing:
            raise BundleError(
                f"feature parameters {shown(unknown or missing)} are "
                f"{'unknown to' if unknown else 'missing for'} this frontend; "
                "upgrade moodmic or re-convert the model"
            )
        params = cls(**data)
        params.check_supported()
        return params

    def check_supported(self) -> None:
        """Raise BundleError unless this frontend computes exactly these features."""
        problems = [p for p in (_field_problem(f.name, str(f.type), getattr(self, f.name)) for f in fields(self)) if p]
        if not problems:  # relations between parameters need them to be numbers
            if self.window != "hann":
                problems.append(f"window {shown(self.window)} (only 'hann')")
            if self.mel_scale != "slaney":
                problems.append(f"mel_scale {shown(self.mel_scale)} (only 'slaney')")
            if not self.fmin < self.fmax <= self.sample_rate / 2:
                problems.append(f"fmin/fmax {self.fmin}/{self.fmax} (need fmin < fmax <= {self.sample_rate / 2:g}, "
                                "half the sample_rate)")
            if not self.hop_length <= self.n_fft <= MAX_OVERLAP * self.hop_length:
                problems.append(f"n_fft {self.n_fft} with hop_length {self.hop_length} (need hop_length <= n_fft <= "
                                f"{MAX_OVERLAP} x hop_length)")
            if self.enhanced and self.sample_rate != 16000:
                problems.append(f"WebRTC enhancement at sample_rate {self.sample_rate} (it runs at 16000 only)")
            if self.window_seconds > MAX_WINDOW_SECONDS:
                problems.append(f"n_frames {self.n_frames}: a window of {self.window_seconds:.1f} s "
                                f"(at most {MAX_WINDOW_SECONDS:g} s)")
        if problems:
            raise BundleError(
                "the model's features cannot be computed by this moodmic: "
                + "; ".join(problems)
                + "; upgrade moodmic or re-convert the model"
            )


_KINDS = {"int": "an integer", "float": "a finite number", "str": "a string"}


def _field_problem(name: str, kind: str, value: Any) -> str | None:
    """Why `value` cannot be the parameter `name` (annotated `kind`), or None."""
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # an integer is a number too (JSON writes 0.0 as 0 at times)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(value, int) or math.isfinite(value))
    if not ok:
        return f"{name} {shown(value)} (expected {_KINDS[kind]})"
    if name == "feature_version" and value != FEATURE_VERSION:
        return f"feature_version {shown(value)} (this frontend: {FEATURE_VERSION})"
    lo, hi = LIMITS.get(name, (None, None))
    if lo is not None and not lo <= value <= hi:
        return f"{name} {shown(value)} (supported: {lo:g}..{hi:g})"
    return None


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_part = hz >= 1000.0
    mel[log_part] = 15.0 + np.log(hz[log_part] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3)
    log_part = mel >= 15.0
    hz[log_part] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log_part] - 15.0))
    return hz


def mel_edges_hz(p: FeatureParams) -> np.ndarray:
    """n_mels + 2 band edges in hertz; band i spans edges[i]..edges[i+2] and peaks at edges[i+1]."""
    lo, hi = _hz_to_mel(np.array([p.fmin, p.fmax]))
    return _mel_to_hz(np.linspace(lo, hi, p.n_mels + 2))


def mel_filterbank(p: FeatureParams) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular filters with Slaney area normalisation, as librosa builds them."""
    fft_hz = np.fft.rfftfreq(p.n_fft, 1.0 / p.sample_rate)
    edges = mel_edges_hz(p)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


class Frontend:
    """Turns samples into log-mel frames; holds the precomputed window and filterbank."""

    def __init__(self, params: FeatureParams):
        params.check_supported()
        if params.enhanced:  # a bundle that needs the enhancement package fails at load, not at its first audio
            from .enhance import require

            require()
        self.params = params
        n = np.arange(params.n_fft)
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * n / params.n_fft)  # float64: see frames()
        self._mel_t = np.ascontiguousarray(mel_filterbank(params).T)  # (bins, mels) for frames @ mel_t
        self._offset_db = 10.0 * np.log10(max(params.amin, params.ref_power))

    def n_frames_for(self, n_samples: int) -> int:
        p = self.params
        return 0 if n_samples < p.n_fft else (n_samples - p.n_fft) // p.hop_length + 1

    def frames(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All complete frames of `audio`: (log-mel (T, n_mels) float32, mean square (T,) float64)."""
        p = self.params
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        count = self.n_frames_for(len(audio))
        if count == 0:
            return np.empty((0, p.n_mels), np.float32), np.empty((0,), np.float32)
        if count > CHUNK_FRAMES:  # a long clip in pieces: its FFT would otherwise take ~1 MB per second of audio
            parts = [self.frames(audio[i * p.hop_length : (min(i + CHUNK_FRAMES, count) - 1) * p.hop_length + p.n_fft])
                     for i in range(0, count, CHUNK_FRAMES)]
            return np.concatenate([m for m, _ in parts]), np.concatenate([ms for _, ms in parts])
        framed = np.lib.stride_tricks.as_strided(
            audio, shape=(count, p.n_fft), strides=(audio.strides[0] * p.hop_length, audio.strides[0]), writeable=False
        )
        # The FFT runs in float64: in float32 its rounding shows as ~3e-3 dB on the weak bins of
        # pure tones; float64 matches librosa within 1e-5 dB and costs nothing noticeable.
        spectrum = np.fft.rfft(framed * self._window, axis=1)
        # Capped so absurd but finite samples (a float file holding 1e24) give huge dB, not inf/NaN.
        power = np.minimum(spectrum.real**2 + spectrum.imag**2, _POWER_CAP).astype(np.float32)
        # One product per frame (a stack of 1-row matmuls), so a frame's value never depends on
        # how many frames are computed together: batch and stream stay bit-identical.
        mel = np.matmul(power[:, None, :], self._mel_t)[:, 0, :]
        log_mel = 10.0 * np.log10(np.maximum(mel, p.amin)) - self._offset_db
        np.maximum(log_mel, p.floor_db, out=log_mel)
        mean_square = np.einsum("ij,ij->i", framed, framed, dtype=np.float64) / p.n_fft
        return log_mel.astype(np.float32, copy=False), mean_square


def rms_dbfs(mean_square: np.ndarray | float) -> float:
    """Loudness of frames in dBFS (a full-scale square wave is 0 dBFS, a full-scale sine -3 dBFS)."""
    ms = float(np.mean(mean_square))
    return RMS_FLOOR_DBFS if ms <= 10 ** (RMS_FLOOR_DBFS / 10) else float(10.0 * np.log10(ms))


@dataclass(frozen=True)
class Window:
    """One model input: `n_frames` consecutive frames of the stream."""

    index: int  # window number in the stream (0, 1, ...)
    start_frame: int  # first frame of the window
    features: np.ndarray  # (n_frames, n_mels) float32, time first: the model's input orientation
    rms_dbfs: float
    start_s: float
    end_s: float


class FeatureStream:
    """Streaming frontend: push samples in chunks of any size, get each window once it is complete.

    Every frame is computed once, when the window that needs it can complete. Windows start every `hop_frames`
    frames from the first sample pushed, so the result never depends on the chunk size.
    """

    def __init__(self, frontend: Frontend, hop_frames: int):
        if hop_frames < 1:
            raise ValueError("hop_frames must be >= 1")
        self.frontend = frontend
        self.hop_frames = hop_frames
        p = frontend.params
        self._pending: list[np.ndarray] = []  # samples not yet turned into frames
        self._pending_len = 0
        self._mels = np.empty((0, p.n_mels), np.float32)  # the last frames still needed by a window
        self._ms = np.empty(0, np.float32)
        self._first_kept = 0  # stream index of _mels[0]
        self._next_window = 0
        self._enhancer = p.enhancer()  # one for the whole stream: it keeps state between chunks

    @property
    def frames_seen(self) -> int:
        return self._first_kept + len(self._mels)

    def push(self, samples: np.ndarray) -> list[Window]:
        p = self.frontend.params
        samples = np.asarray(samples, np.float32).reshape(-1)
        if self._enhancer is not None:
            samples = self._enhancer.process(samples)
        if len(samples):
            self._pending.append(samples)
            self._pending_len += len(samples)
        # Frames are computed once the next window can complete, all at once: one frontend call per
        # hop however small the chunks (the results are the same frame by frame).
        missing = self._next_window * self.hop_frames + p.n_frames - self.frames_seen
        if self._pending_len < (missing - 1) * p.hop_length + p.n_fft:
            return []
        buf = np.concatenate(self._pending)
        count = self.frontend.n_frames_for(len(buf))
        mels, ms = self.frontend.frames(buf[: (count - 1) * p.hop_length + p.n_fft])
        rest = buf[count * p.hop_length :]
        self._pending, self._pending_len = [rest], len(rest)
        self._mels = np.concatenate([self._mels, mels])
        self._ms = np.concatenate([self._ms, ms])
        out = []
        while True:
            start = self._next_window * self.hop_frames
            if start + p.n_frames > self.frames_seen:
                break
            out.append(_make_window(p, self._next_window, start, self._mels[start - self._first_kept :][: p.n_frames],
                                    self._ms[start - self._first_kept :][: p.n_frames]))
            self._next_window += 1
        # Drop frames that no future window needs.
        keep_from = self._next_window * self.hop_frames
        drop = min(max(0, keep_from - self._first_kept), len(self._mels))
        if drop:
            self._mels = self._mels[drop:]
            self._ms = self._ms[drop:]
            self._first_kept += drop
        return out


def _make_window(p: FeatureParams, index: int, start: int, mels: np.ndarray, ms: np.ndarray) -> Window:
    start_s = start * p.hop_length / p.sample_rate
    return Window(
        index=index,
        start_frame=start,
        features=np.array(mels, dtype=np.float32, copy=True),
        rms_dbfs=rms_dbfs(ms),
        start_s=start_s,
        end_s=start_s + p.window_seconds,
    )


def clip_frames(frontend: Frontend, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of a clip (log-mel, mean square), after the bundle's enhancement if any, a clip shorter
    than one window padded once with digital silence (which the frontend maps to the floor). Any n_frames
    consecutive rows are a window a device listening to the clip could take."""
    p = frontend.params
    audio = np.asarray(audio, np.float32)
    enhancer = p.enhancer()
    if enhancer is not None:  # from the clip's first sample, as a device listening to it
        audio = enhancer.process(audio)
    if len(audio) < p.window_samples:
        audio = np.concatenate([audio, np.zeros(p.window_samples - len(audio), np.float32)])
    return frontend.frames(audio)


def file_windows(frontend: Frontend, audio: np.ndarray, hop_frames: int) -> list[Window]:
    """The windows of a whole clip, exactly as a device listening to it would take them."""
    p = frontend.params
    mels, ms = clip_frames(frontend, audio)
    starts = range(0, len(mels) - p.n_frames + 1, hop_frames)
    return [_make_window(p, i, s, mels[s : s + p.n_frames], ms[s : s + p.n_frames]) for i, s in enumerate(starts)]


def stack(windows: list[Window]) -> np.ndarray:
    """(N, n_frames, n_mels) float32 model input for a list of windows."""
    if not windows:
        raise ValueError("no windows")
    return np.stack([w.features for w in windows])
