"""`moodmic run`: audio source -> streaming features -> gate -> model -> smoothing -> publisher.

One thread does the work (the audio callback and paho's network thread only move data), so the
order of events is simple: read a chunk, compute only the frames it completes, handle each window
that becomes complete, then do what is due (state heartbeat, health, watchdog). Every consumed
window is either gated or inferred, and the health counters say so.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

import numpy as np

from .config import Settings
from .errors import ConfigError, TemporaryFault
from .features import FeatureParams, FeatureStream, Window
from .gate import Gate
from .model import EmotionModel
from .notify import Notifier
from .schema import StateMessage, WindowResult, labelled, utc_iso
from .smoothing import Smoother
from .sources import EndOfSource, Source

_LOG = logging.getLogger(__name__)
READ_TIMEOUT_S = 0.25  # how long one read waits for audio: bounds the reaction to SIGTERM
END_WAIT_S = 5.0  # at the end of a file, how long to wait for the broker before spooling instead
LINK_GRACE_S = 2.0  # a publisher not delivering for this long is reported in STATUS= (not the connect at start)


def decision_hop_frames(settings: Settings, params: FeatureParams) -> int:
    """Frames per decision hop: `windows.hop_seconds` must be a whole number of the bundle's frames.
    The frame hop is a fact of the model bundle, so this is checked once the bundle is loaded, before
    any audio: a ConfigError (exit 78, which systemd does not restart) naming the nearest valid values."""
    hop = settings.windows.hop_seconds
    try:
        return params.hop_frames(hop)
    except ValueError:
        step = params.hop_length / params.sample_rate
        below, above = max(1, int(hop / step)) * step, (int(hop / step) + 1) * step
        nearest = " or ".join(f"{v:.6g}" for v in dict.fromkeys((below, above)) if v != hop)
        raise ConfigError(f"windows.hop_seconds: {hop:g} s is not a whole number of the model's "
                          f"{step * 1000:g} ms frames; use a multiple of {step:g} s, e.g. {nearest}") from None


class Publisher(Protocol):
    def start(self) -> None: ...
    def publish_state(self, msg: StateMessage) -> None: ...
    def publish_event(self, payload: dict) -> None: ...
    def publish_health(self, payload: dict) -> None: ...
    def wait_connected(self, timeout: float) -> bool: ...
    def check(self) -> None: ...
    def stats(self) -> dict: ...
    def close(self, timeout: float = 2.0) -> None: ...


class StdoutPublisher:
    """--mqtt off: state messages as JSON lines on stdout (events and health go to the log)."""

    def __init__(self, out: TextIO = sys.stdout, states: bool = True):
        self._out, self._states, self._count = out, states, 0

    def start(self) -> None:
        pass

    def publish_state(self, msg: StateMessage) -> None:
        if self._states:
            print(json.dumps(msg.to_dict()), file=self._out, flush=True)
        self._count += 1

    def publish_event(self, payload: dict) -> None:
        pass

    def publish_health(self, payload: dict) -> None:
        pass

    def wait_connected(self, timeout: float) -> bool:
        return True

    def check(self) -> None:
        pass

    def stats(self) -> dict:
        return {"connected": False, "queued": 0, "handed": self._count, "acked": self._count, "dropped": 0,
                "reconnects": 0}

    def close(self, timeout: float = 2.0) -> None:
        pass


@dataclass
class Counters:
    consumed: int = 0  # windows taken from the stream
    gated: int = 0  # ... kept from the model by the gate
    inferred: int = 0  # ... classified by the model
    states: int = 0  # state messages produced (changes + heartbeats)
    events: int = 0  # state changes
    bad_samples: int = 0  # NaN/inf samples replaced by silence
    audio_s: float = 0.0  # seconds of audio consumed


class Daemon:
    def __init__(self, settings: Settings, model: EmotionModel, source: Source, publisher: Publisher, *,
                 raw: bool = False, out: TextIO = sys.stdout, notifier: Notifier | None = None):
        self.settings = settings
        self.model = model
        self.source = source
        self.publisher = publisher
        self.raw = raw
        self.out = out
        self.notifier = notifier or Notifier()
        params = model.bundle.features
        self.stream = FeatureStream(model.frontend, decision_hop_frames(settings, params))
        self.gate = Gate(settings.gate, params)
        abstain = model.bundle.abstain_below if settings.smoothing.uncertain else 0.0
        self.smoother = Smoother(model.labels, settings.smoothing, settings.gate, abstain, model.bundle.smoothing_windows)
        self.counters = Counters()
        self.boot_id = uuid.uuid4().hex[:12]
        self._stop = False
        self._seq = 0
        self._audio_t0: float | None = None  # wall-clock time of the stream's first sample
        self._last_window: Window | None = None
        self._previous_label: str | None = None  # of the last published state, for the event
        self._stalled_s = 0.0
        self._zero_run = 0  # consecutive exact-zero samples
        self._started = time.monotonic()
        self._next_state = self._next_health = 0.0
        self._status_text = ""  # the last STATUS= without the broker part
        self._link_down_since: float | None = None
        self._link_up = True  # what STATUS= says: False while it reports the broker unreachable

    def stop(self) -> None:
        """Ask the loop to finish (signal handlers call this)."""
        self._stop = True

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        self.publisher.start()
        self._status(f"waiting for audio from {self.source.describe()}")
        _LOG.info("listening to %s with model %s (%s), smoothing over %d windows", self.source.describe(),
                  self.model.bundle.name, self.model.tflite.runtime, self.smoother.windows)
        now = time.monotonic()
        self._next_state = now + self.settings.mqtt.state_interval
        self._next_health = now + self.settings.mqtt.health_interval
        fault: TemporaryFault | None = None
        try:
            while not self._stop:
                try:
                    chunk = self.source.read(READ_TIMEOUT_S)
                except EndOfSource:
                    _LOG.info("end of %s", self.source.describe())
                    # A replay can end before the broker answered: give it a moment, so the results
                    # are delivered (or a refusal reported) rather than spooled.
                    self.publisher.wait_connected(END_WAIT_S)
                    self.publisher.check()
                    break
                if chunk is None:
                    self._stalled(READ_TIMEOUT_S)
                else:
                    self._audio(chunk)
                self._due()
                self.publisher.check()
        except TemporaryFault as exc:
            fault = exc
            _LOG.error("fault: %s", exc)
        finally:
            self.notifier.stopping()
            self.publisher.publish_health(self.health(fault=str(fault) if fault else None))
            self._log_health()
            self.publisher.close()
            self.source.close()
        if fault:
            raise fault
        self.publisher.check()  # a refusal can answer the last messages while close() drains them
        return 0

    def _stalled(self, seconds: float) -> None:
        if not self.source.live:
            return
        self._stalled_s += seconds
        if self._stalled_s >= self.settings.audio.dead_after_seconds:
            raise TemporaryFault(f"no audio from {self.source.describe()} for {self._stalled_s:.1f} s: the microphone "
                                 "stopped or was unplugged")

    def _audio(self, chunk: np.ndarray) -> None:
        self._stalled_s = 0.0
        if self._audio_t0 is None:
            self._audio_t0 = time.time() - len(chunk) / self.source.rate
            self._status_text = f"listening to {self.source.describe()}"
            self.notifier.ready(self._status_text)
        bad = ~np.isfinite(chunk)
        if bad.any():
            self.counters.bad_samples += int(bad.sum())
            chunk = np.where(bad, np.float32(0), chunk)
        self._track_zeros(chunk)
        self.counters.audio_s += len(chunk) / self.source.rate
        for window in self.stream.push(chunk):
            self._window(window)
            self.notifier.progress()

    def _track_zeros(self, chunk: np.ndarray) -> None:
        """Exact digital zeros for dead_after_seconds is a dead microphone, not a quiet room. A recording
        may hold digital silence (an edited file): only a live source is diagnosed."""
        if not self.source.live:
            return
        nonzero = np.flatnonzero(chunk)
        self._zero_run = self._zero_run + len(chunk) if len(nonzero) == 0 else len(chunk) - 1 - int(nonzero[-1])
        if self._zero_run >= self.settings.audio.dead_after_seconds * self.source.rate:
            raise TemporaryFault(f"{self.source.describe()} delivered exact digital silence for "
                                 f"{self._zero_run / self.source.rate:.1f} s: the microphone is dead or muted")

    def _window(self, w: Window) -> None:
        c = self.counters
        c.consumed += 1
        self._last_window = w
        if self.raw:  # every window's result, gate off: exactly predict --windows
            c.inferred += 1
            probs = self.model.probabilities(w.features[None])[0]
            label, confidence, named = labelled(self.model.labels, probs)
            print(json.dumps(WindowResult(w.start_s, w.end_s, label, confidence, named, w.rms_dbfs).to_dict()),
                  file=self.out, flush=True)
            changed = self.smoother.inferred(probs)
        elif self.gate.check(w).speech:
            c.inferred += 1
            changed = self.smoother.inferred(self.model.probabilities(w.features[None])[0])
        else:
            c.gated += 1
            changed = self.smoother.gated()
        if changed:
            previous = self._previous_label
            msg = self._publish_state()
            self.publisher.publish_event(msg.event(previous))
            c.events += 1
            conf = "" if msg.confidence is None else f" ({msg.confidence:.2f})"
            _LOG.info("state: %s%s at %s", msg.label, conf, msg.window_end)
            self._status(f"{msg.label}{conf}; {c.consumed} windows")

    @property
    def audio_t0(self) -> float | None:
        """Wall-clock time of the stream's first sample: a state's window_end minus it is its stream offset."""
        return self._audio_t0

    def _publish_state(self) -> StateMessage:
        w = self._last_window
        assert w is not None and self._audio_t0 is not None and self.smoother.label is not None
        self._seq += 1
        msg = StateMessage(
            label=self.smoother.label, confidence=self.smoother.confidence, probabilities=self.smoother.probabilities(),
            seq=self._seq, boot_id=self.boot_id, window_start=utc_iso(self._audio_t0 + w.start_s),
            window_end=utc_iso(self._audio_t0 + w.end_s), rms_dbfs=w.rms_dbfs, model_sha=self.model.bundle.tflite_sha256,
        )
        self.publisher.publish_state(msg)
        self.counters.states += 1
        self._previous_label = msg.label
        self._next_state = time.monotonic() + self.settings.mqtt.state_interval
        return msg

    def _status(self, text: str) -> None:
        """STATUS= is the state, plus the broker's absence while it lasts and any client-id takeover
        (systemctl status shows it)."""
        self._status_text = text
        stats = self.publisher.stats()
        if not self._link_up:
            text += f"; MQTT broker unreachable, {stats.get('queued', 0)} queued"
        self.notifier.status(text + self.link_text(stats))

    @staticmethod
    def link_text(stats: dict[str, Any]) -> str:
        """What STATUS= adds about a publisher whose client id another device also uses."""
        n = stats.get("takeovers", 0)
        return (f"; MQTT client id {stats.get('client_id')} taken over by another client {n} times: two devices "
                "share one mqtt.device_id" if n else "")

    def _watch_link(self, now: float, refresh: bool) -> None:
        if self.publisher.wait_connected(0):
            self._link_down_since = None
        elif self._link_down_since is None:
            self._link_down_since = now
        up = self._link_down_since is None or now - self._link_down_since < LINK_GRACE_S
        if up != self._link_up or (refresh and (not up or self.publisher.stats().get("takeovers", 0))):
            # while it is down (or taken over), the counts are refreshed
            self._link_up = up
            self._status(self._status_text)

    def _due(self) -> None:
        now = time.monotonic()
        self._watch_link(now, refresh=now >= self._next_health)
        if now >= self._next_state:
            if self.smoother.label is not None:
                self._publish_state()  # heartbeat: the unchanged state, so subscribers see we are alive
            self._next_state = now + self.settings.mqtt.state_interval
        if now >= self._next_health:
            self.publisher.publish_health(self.health())
            self._log_health()
            self._next_health = now + self.settings.mqtt.health_interval

    def health(self, fault: str | None = None) -> dict[str, Any]:
        pub = self.publisher.stats()
        return {
            **asdict(self.counters),
            "audio_s": round(self.counters.audio_s, 1),
            "state": self.smoother.label,
            "published": pub.get("acked", 0),
            "queued": pub.get("queued", 0),
            "dropped": pub.get("dropped", 0),
            "reconnects": pub.get("reconnects", 0),
            "takeovers": pub.get("takeovers", 0),
            "spool_rejected": pub.get("spool_rejected", 0),
            "connected": pub.get("connected", False),
            "overruns": self.source.overruns,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "runtime": self.model.tflite.runtime,
            "model": self.model.bundle.name,
            "boot_id": self.boot_id,
            "fault": fault,
        }

    def _log_health(self) -> None:
        h = self.health()
        _LOG.info("health: %d windows (%d gated, %d inferred), %d states, %d queued, %d dropped, %d overruns, "
                  "%.0f s audio", h["consumed"], h["gated"], h["inferred"], h["states"], h["queued"], h["dropped"],
                  h["overruns"], h["audio_s"])
