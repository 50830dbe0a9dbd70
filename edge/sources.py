"""Where the daemon's audio comes from, behind one small interface.

A source yields mono float32 chunks at the model's rate: `read(timeout)` returns the next chunk,
or None when nothing arrived within `timeout` seconds (the daemon counts that as stalled time),
and raises EndOfSource when a finite source is done.

- `mic`: a sounddevice InputStream at the device's own rate; its callback only copies blocks
  into a bounded queue (a full queue counts an overrun instead of blocking the audio thread);
  `read` downmixes and resamples with soxr's streaming resampler, which keeps its state across
  chunks.
- `file:PATH`: a recording replayed in real time (or as fast as possible with --fast), read and
  resampled block by block, so an hour-long file costs no more memory than a minute.
- `GeneratorSource`: chunks from any iterable (tests); a None item is a read that timed out.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .audio import Resampler, open_audio, read_block, to_mono
from .errors import ConfigError, TemporaryFault

_LOG = logging.getLogger(__name__)


class EndOfSource(Exception):
    """A finite source (a file, a generator) has no more audio."""


class Source:
    rate: int  # of the chunks returned by read()
    live = False  # True when a stall means a dead device (a microphone), not a slow reader
    overruns = 0  # blocks lost because the reader fell behind

    def read(self, timeout: float) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__


class GeneratorSource(Source):
    def __init__(self, chunks: Iterable[np.ndarray | None], rate: int, target_rate: int, live: bool = False):
        self._it: Iterator[np.ndarray | None] = iter(chunks)
        self.rate = target_rate
        self.live = live  # True: a None item counts as a stalled device, like a silent microphone
        self._resample = Resampler(rate, target_rate)

    def read(self, timeout: float) -> np.ndarray | None:
        try:
            chunk = next(self._it)
        except StopIteration:
            raise EndOfSource from None
        return None if chunk is None else self._resample(to_mono(chunk))


class FileSource(Source):
    def __init__(self, path: str | Path, target_rate: int, block_seconds: float = 0.1, realtime: bool = True):
        self.path = Path(path)
        self._file = open_audio(self.path)
        self.rate = target_rate
        self._block = max(1, int(self._file.samplerate * block_seconds))
        self._resample = Resampler(self._file.samplerate, target_rate)
        self._realtime = realtime
        self._sent = 0  # source frames delivered
        self._t0: float | None = None
        self._done = False

    def read(self, timeout: float) -> np.ndarray | None:
        if self._done:
            raise EndOfSource
        if self._realtime:
            if self._t0 is None:
                self._t0 = time.monotonic()
            wait = self._t0 + self._sent / self._file.samplerate - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
        block = read_block(self._file, self._block)
        self._sent += len(block)
        last = len(block) < self._block
        if last:
            self._done = True
        return self._resample(to_mono(block) if len(block) else np.zeros(0, np.float32), last=last)

    def close(self) -> None:
        self._file.close()

    def describe(self) -> str:
        return f"file {self.path} ({self._file.samplerate} Hz, {'real time' if self._realtime else 'fast'})"


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the module loads, but PortAudio's shared library is missing
        raise ConfigError(f"PortAudio is not installed ({exc}); run: sudo apt-get install libportaudio2") from exc
    return sounddevice


def find_input_device(spec: str) -> int | None:
    """'' = the default input; digits = an index; otherwise the input device whose name contains spec."""
    sd = _sounddevice()
    if not spec:
        return None
    devices = sd.query_devices()
    if spec.isdigit():
        index = int(spec)
        if index >= len(devices) or devices[index]["max_input_channels"] < 1:
            raise TemporaryFault(f"no input device with index {index}; see `moodmic devices` (is it plugged in?)")
        return index
    matches = [i for i, d in enumerate(devices) if d["max_input_channels"] > 0 and spec.lower() in d["name"].lower()]
    if not matches:
        raise TemporaryFault(f"no input device named like {spec!r}; see `moodmic devices` (is it plugged in?)")
    return matches[0]


def list_input_devices() -> list[dict[str, Any]]:
    sd = _sounddevice()
    default = sd.default.device[0] if sd.default.device else -1
    return [
        {"index": i, "name": d["name"], "channels": d["max_input_channels"], "default_rate": d["default_samplerate"],
         "default": i == default}
        for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0
    ]


class MicSource(Source):
    live = True

    def __init__(self, device: str, target_rate: int, capture_rate: int = 0, block_seconds: float = 0.1,
                 queue_seconds: float = 10.0):
        sd = _sounddevice()
        self.rate = target_rate
        self.overruns = 0
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max(1, round(queue_seconds / block_seconds)))
        self._failed: str | None = None  # what killed the audio callback, reported by the next read()
        index = find_input_device(device)
        try:
            info = sd.query_devices(index, "input")
        except (ValueError, sd.PortAudioError) as exc:
            raise TemporaryFault(f"no usable input device ({exc}); plug in a microphone or set audio.device") from exc
        self.device_name = info["name"]
        rates = [capture_rate] if capture_rate else []
        rates.append(int(info["default_samplerate"]))
        last_error: Exception | None = None
        for rate in dict.fromkeys(rates):  # the configured rate first; the device's own if it refuses
            try:
                self._stream = sd.InputStream(device=index, samplerate=rate, channels=1, dtype="float32",
                                              blocksize=max(1, int(rate * block_seconds)), callback=self._guarded)
                self._stream.start()
            except sd.PortAudioError as exc:
                last_error = exc
                _LOG.warning("input device %r refused %d Hz (%s)", self.device_name, rate, exc)
                continue
            self.capture_rate = rate
            self._resample = Resampler(rate, target_rate)
            _LOG.info("capturing from %r at %d Hz", self.device_name, rate)
            return
        raise TemporaryFault(f"cannot open input device {self.device_name!r} ({last_error}); check audio.device")

    def _guarded(self, *args: Any) -> None:
        # PortAudio's thread: an exception here stops the stream for good, and sounddevice says nothing.
        try:
            self._callback(*args)
        except Exception as exc:
            self._failed = f"{type(exc).__name__}: {exc}"[:300]
            raise _sounddevice().CallbackAbort from exc

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # The audio thread: copy and queue, nothing else; never block.
        if status.input_overflow:
            self.overruns += 1
        try:
            self._queue.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self.overruns += 1

    def read(self, timeout: float) -> np.ndarray | None:
        try:
            block = self._queue.get(timeout=timeout)
        except queue.Empty:
            if self._failed is not None:  # the daemon exits 75 and systemd restarts it
                raise TemporaryFault(f"the capture callback of {self.describe()} failed ({self._failed}); "
                                     "capture stopped") from None
            return None
        return self._resample(block)

    def close(self) -> None:
        # abort(), not stop(): stop() waits for buffers a vanished device will never deliver.
        try:
            self._stream.abort()
            self._stream.close()
        except Exception as exc:  # closing a device that is already gone must not mask the real error
            _LOG.debug("closing the input stream: %s", exc)

    def describe(self) -> str:
        return f"microphone {self.device_name!r} at {self.capture_rate} Hz"


def open_source(spec: str, target_rate: int, *, device: str = "", capture_rate: int = 0, block_seconds: float = 0.1,
                queue_seconds: float = 10.0, fast: bool = False) -> Source:
    if spec == "mic":
        return MicSource(device, target_rate, capture_rate, block_seconds, queue_seconds)
    if spec.startswith("file:"):
        return FileSource(spec[len("file:"):], target_rate, block_seconds, realtime=not fast)
    raise ConfigError(f"audio source {spec!r} is unknown; use 'mic' or 'file:PATH'")
