"""Audio faults at the source interface: overruns, a refused rate, a missing device, the file source.

The microphone's own behaviour (a real PortAudio stream) is tested in test_mic.py through PulseAudio;
here a stand-in sounddevice module plays the hardware's part where real hardware would be needed:
a device that refuses a rate, or an audio thread that outpaces its reader.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from edge.errors import ConfigError, TemporaryFault
from edge.sources import EndOfSource, FileSource, MicSource, open_source


class FakeStream:
    def __init__(self, *, device, samplerate, channels, dtype, blocksize, callback, refuse=()):
        if samplerate in refuse:
            raise FakeSD.PortAudioError(f"Invalid sample rate {samplerate}")
        self.samplerate, self.blocksize, self.callback = samplerate, blocksize, callback
        self.aborted = self.closed = False
        FakeSD.last = self

    def start(self):
        pass

    def abort(self):
        self.aborted = True

    def close(self):
        self.closed = True

    def deliver(self, block, overflow=False):
        self.callback(block[:, None].astype(np.float32), len(block), None, types.SimpleNamespace(input_overflow=overflow))


class FakeSD(types.ModuleType):
    class PortAudioError(Exception):
        pass

    last: FakeStream | None = None

    def __init__(self, refuse=()):
        super().__init__("sounddevice")
        self.refuse = refuse
        self.default = types.SimpleNamespace(device=[0, 0])

    def query_devices(self, index=None, kind=None):
        devices = [{"name": "USB PnP Sound Device", "max_input_channels": 1, "default_samplerate": 48000.0},
                   {"name": "HDMI out", "max_input_channels": 0, "default_samplerate": 48000.0}]
        if kind == "input":
            return devices[index or 0]
        return devices

    def InputStream(self, **kwargs):  # noqa: N802 (sounddevice's name)
        return FakeStream(**kwargs, refuse=self.refuse)


@pytest.fixture
def fake_sd(monkeypatch):
    def install(refuse=()):
        module = FakeSD(refuse)
        monkeypatch.setitem(sys.modules, "sounddevice", module)
        return module

    return install


def test_overruns_are_counted_not_blocking(fake_sd):
    fake_sd()
    mic = MicSource("usb", 16000, block_seconds=0.1, queue_seconds=0.3)  # room for 3 blocks
    stream = FakeSD.last
    assert stream.samplerate == 48000 and mic.describe() == "microphone 'USB PnP Sound Device' at 48000 Hz"
    for _ in range(5):  # the reader is late: 2 blocks do not fit
        stream.deliver(np.full(4800, 0.1))
    stream.deliver(np.full(4800, 0.1), overflow=True)  # PortAudio reports one, and this block does not fit
    assert mic.overruns == 4
    got = [mic.read(0.01) for _ in range(3)]
    assert all(len(c) > 0 for c in got) and mic.read(0.01) is None  # 48 kHz blocks come out at 16 kHz
    mic.close()
    assert stream.aborted and stream.closed  # abort, not stop: a vanished device never drains


def test_a_refused_rate_falls_back_to_the_device_rate(fake_sd):
    fake_sd(refuse=(44100,))
    mic = MicSource("", 16000, capture_rate=44100)
    assert mic.capture_rate == 48000
    fake_sd(refuse=(44100, 48000))
    with pytest.raises(TemporaryFault, match="cannot open input device 'USB PnP Sound Device'"):
        MicSource("", 16000, capture_rate=44100)


def test_missing_devices_are_temporary_faults(fake_sd):
    fake_sd()
    with pytest.raises(TemporaryFault, match="no input device named like 'blue yeti'"):
        MicSource("blue yeti", 16000)
    with pytest.raises(TemporaryFault, match="no input device with index 1"):  # an output-only device
        MicSource("1", 16000)


def test_missing_portaudio_is_a_config_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(ConfigError, match="apt-get install libportaudio2"):
        MicSource("", 16000)


def test_unknown_source_and_file_source_end(tmp_path):
    with pytest.raises(ConfigError, match="audio source 'line-in' is unknown"):
        open_source("line-in", 16000)
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.full(1600, 0.1, np.float32), 16000)
    src = open_source(f"file:{tmp_path / 'a.wav'}", 16000, fast=True)
    assert isinstance(src, FileSource) and not src.live
    total = 0
    with pytest.raises(EndOfSource):
        while True:
            total += len(src.read(0.1))
    assert total == 1600
