"""Optional speech enhancement in front of the log-mel frontend: WebRTC noise suppression and automatic gain.

The `webrtc-noise-gain` package is the one Home Assistant's wyoming-satellite runs on a Pi: WebRTC's audio
processing (high-pass filter, noise suppression, adaptive digital gain) on 10-ms chunks of 16-bit PCM at
16 kHz. It keeps state from chunk to chunk, so it is part of the stream: the daemon runs one processor over
everything it hears, and a file or training clip is processed from its first sample by a fresh one, which
gives the same samples a device listening to that file from its start would get. A bundle asks for it in
its `features` block (FeatureParams.webrtc_*), so a model trained on enhanced audio is always served it.
"""

from __future__ import annotations

import numpy as np

from .errors import BundleError

SAMPLE_RATE = 16000  # the package processes 16-kHz mono only
CHUNK = SAMPLE_RATE // 100  # 10 ms, the processor's unit


def require():
    """The package's AudioProcessor class; BundleError naming the package where it is missing (only a bundle
    that asks for enhancement needs it, so a frontend calls this at load, before any audio)."""
    try:
        from webrtc_noise_gain import AudioProcessor
    except ImportError as err:
        raise BundleError(
            "this model needs WebRTC enhancement but the webrtc-noise-gain package is missing; "
            "pip install 'moodmic[edge]'"
        ) from err
    return AudioProcessor


class Enhancer:
    """A stream of float32 samples in, the enhanced stream out: every complete 10-ms chunk once, in order.

    Samples of an incomplete chunk wait for the next push, so the output never depends on the chunk sizes
    pushed; a stream that ends mid-chunk leaves at most 9.9 ms unprocessed."""

    def __init__(self, noise_suppression: int, auto_gain_dbfs: int):
        self._processor = require()(auto_gain_dbfs, noise_suppression)
        self._pending = np.empty(0, np.int16)

    def process(self, samples: np.ndarray) -> np.ndarray:
        pcm = np.clip(np.round(np.asarray(samples, np.float32) * 32768.0), -32768, 32767).astype(np.int16)
        pcm = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        whole = len(pcm) - len(pcm) % CHUNK
        self._pending = pcm[whole:]
        raw = pcm[:whole].tobytes()
        step = CHUNK * 2  # bytes per chunk
        out = b"".join(self._processor.Process10ms(raw[i : i + step]).audio for i in range(0, len(raw), step))
        return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0

