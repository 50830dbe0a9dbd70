"""Whisper's audio encoder in NumPy, from a CTranslate2 model.bin (research/whisper_probe.py's teacher).

Whisper (Radford et al. 2022, github.com/openai/whisper, MIT) reads 80-band log-mel at 100 frames a
second through two convolutions and a stack of pre-norm transformer layers. faster-whisper ships its
weights converted for CTranslate2 (one model.bin). Only the encoder is read here, and every layer's
output is returned, since what carries a voice's emotion sits in the middle layers of a speech
model rather than in its last one, which is shaped for the text decoder. NumPy alone, so that the
probe needs nothing beyond the train install.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

RATE, N_FFT, HOP, N_MELS = 16000, 400, 160, 80  # whisper/audio.py
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # CTranslate2's DataType


def read_ct2(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (format version 6) whose names start with `prefix`."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:

        def take(fmt: str):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))

        def name() -> str:
            (n,) = take("<H")
            return f.read(n)[:-1].decode()

        (version,) = take("<I")
        if version != 6:
            raise SystemExit(f"{path}: CTranslate2 model format {version}, this reader knows 6")
        spec, _revision, (count,) = name(), take("<I"), take("<I")
        if spec != "WhisperSpec":
            raise SystemExit(f"{path}: a {spec}, not a Whisper model")
        for _ in range(count):
            key = name()
            (rank,) = take("<B")
            shape = take(f"<{rank}I")
            (dtype,), (size,) = take("<B"), take("<I")
            blob = f.read(size)
            if len(blob) != size:
                raise SystemExit(f"{path}: truncated in {key}; the file is incomplete")
            if key.startswith(prefix):
                out[key[len(prefix):]] = np.frombuffer(blob, _DTYPES[dtype]).reshape(shape).astype(np.float32)
    if "conv1/weight" not in out:
        raise SystemExit(f"{path}: no Whisper encoder in it")
    return out


def log_mel(audio: np.ndarray) -> np.ndarray:
    """16 kHz float audio -> (80, frames) log-mel as whisper.audio.log_mel_spectrogram computes it."""
    import librosa

    spec = np.abs(librosa.stft(audio, n_fft=N_FFT, hop_length=HOP, window="hann", center=True,
                               pad_mode="reflect")[:, :-1]) ** 2
    mel = librosa.filters.mel(sr=RATE, n_fft=N_FFT, n_mels=N_MELS) @ spec
    logs = np.log10(np.maximum(mel, 1e-10))
    return ((np.maximum(logs, logs.max() - 8.0) + 4.0) / 4.0).astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _norm(x: np.ndarray, w: dict, key: str) -> np.ndarray:
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w[key + "/gamma"] + w[key + "/beta"]


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """(time, in) -> (time / stride, out): kernel 3, padding 1, as Whisper's two convolutions."""
    padded = np.pad(x, ((1, 1), (0, 0)))
    steps = range(0, len(x), stride)
    taps = np.stack([padded[[t + k for t in steps]] for k in range(3)], axis=-1)  # (time, in, 3)
    return np.einsum("tik,oik->to", taps, weight) + bias


class WhisperEncoder:
    def __init__(self, model_bin: Path):
        self.w = read_ct2(model_bin)
        self.layers = len({k.split("/")[0] for k in self.w if k.split("/")[0][6:].isdigit()})
        self.heads = int(self.w["num_heads"])

    def __call__(self, mel: np.ndarray) -> list[np.ndarray]:
        """(80, frames) log-mel -> [(frames / 2, width)] per depth: the input to layer 0, then each
        layer's output (the last one through the final norm, as the decoder sees it)."""
        w = self.w
        x = _gelu(_conv(mel.T, w["conv1/weight"], w["conv1/bias"], 1))
        x = _gelu(_conv(x, w["conv2/weight"], w["conv2/bias"], 2))
        x = x + w["position_encodings/encodings"][: len(x)]
        outs = [x]
        for i in range(self.layers):
            p = f"layer_{i}/"
            h = _norm(x, w, p + "self_attention/layer_norm")
            q, k, v = np.split(h @ w[p + "self_attention/linear_0/weight"].T + w[p + "self_attention/linear_0/bias"], 3, -1)
            t, d = q.shape
            q, k, v = (a.reshape(t, self.heads, d // self.heads).transpose(1, 0, 2) for a in (q, k, v))
            att = q @ k.transpose(0, 2, 1) / np.sqrt(d // self.heads)
            att = np.exp(att - att.max(-1, keepdims=True))
            ctx = (att / att.sum(-1, keepdims=True)) @ v
            out = w[p + "self_attention/linear_1/weight"], w[p + "self_attention/linear_1/bias"]
            x = x + ctx.transpose(1, 0, 2).reshape(t, d) @ out[0].T + out[1]
            h = _norm(x, w, p + "ffn/layer_norm")
            h = _gelu(h @ w[p + "ffn/linear_0/weight"].T + w[p + "ffn/linear_0/bias"])
            x = x + h @ w[p + "ffn/linear_1/weight"].T + w[p + "ffn/linear_1/bias"]
            outs.append(_norm(x, w, "layer_norm") if i == self.layers - 1 else x)
        return outs
