"""Helpers of the fault suite (tests/test_faults.py) and the soak (scripts/soak.py).

- `speech_audio`: real RAVDESS speech clips back to back with short quiet pauses (room hiss, never
  exact zeros, which would be a dead microphone).
- `TimedRecorder`: tests/broker.py's persistent QoS 1 subscriber, with the arrival time of each message.
- `Tally`: the ledger of one fault: produced, acknowledged, received, lost inside the daemon, lost by
  the broker, duplicated, recovery times; `render_faults` turns tallies into RELIABILITY.md's tables.
- `update_section`: rewrites one generated section of RELIABILITY.md, between
  `<!-- NAME:begin -->` and `<!-- NAME:end -->`, and leaves everything else as it is.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from broker import Recorder

SR = 16000


# -- audio ------------------------------------------------------------------------------------------
def speech_rows(root: Path, seed: int = 0) -> list[dict[str, str]]:
    """RAVDESS speech (not song) clips of the manifest, shuffled deterministically."""
    rows = [r for r in csv.DictReader(open(root / "manifest.csv")) if r["vocal_channel"] == "speech"]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order]


def speech_chunks(root: Path, seconds: float, seed: int = 0, pause_s: float = 0.5) -> Iterator[np.ndarray]:
    """Exactly `seconds` of real speech (16 kHz float32) in pieces: each clip, then `pause_s` of -80 dBFS
    hiss; the corpus is cycled if one pass is not enough."""
    from edge.audio import load_audio

    rng = np.random.default_rng(seed)
    rows = speech_rows(root, seed)
    left, i = int(seconds * SR), 0
    while left > 0:
        clip = load_audio(root / rows[i % len(rows)]["path"], SR)
        for part in (clip, rng.normal(0, 1e-4, int(pause_s * SR)).astype(np.float32)):
            if left > 0:
                yield part[:left]
                left -= len(part[:left])
        i += 1


def speech_audio(root: Path, seconds: float, seed: int = 0, pause_s: float = 0.5) -> np.ndarray:
    return np.concatenate(list(speech_chunks(root, seconds, seed, pause_s)))


# -- the subscriber ---------------------------------------------------------------------------------
class TimedRecorder(Recorder):
    """Recorder (persistent session, QoS 1) that also keeps each arrival's time.monotonic()."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.times: list[float] = []

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._cv:  # an RLock: the parent takes it again
            self.times.append(time.monotonic())
            super()._on_message(client, userdata, msg)

    def keyed(self, base: str) -> list[tuple[float, tuple[str, str, int]]]:
        """(arrival time, (kind, boot_id, seq)) of every state and event message, in arrival order."""
        out = []
        with self._cv:
            pairs = list(zip(self.times, self.messages))
        for t, m in pairs:
            kind = m.topic.rsplit("/", 1)[-1]
            if m.topic in (f"{base}/state", f"{base}/event"):
                d = json.loads(m.payload)
                out.append((t, (kind, d["boot_id"], int(d["seq"]))))
        return out

    def first_new_after(self, base: str, t0: float, also_seen: set | frozenset = frozenset()) -> float | None:
        """Seconds from t0 to the first arrival after t0 of a key neither received before t0 nor in
        `also_seen` (None: none yet)."""
        keyed = self.keyed(base)
        seen = {k for t, k in keyed if t < t0} | set(also_seen)
        return next((t - t0 for t, k in keyed if t >= t0 and k not in seen), None)


# -- the ledger -------------------------------------------------------------------------------------
@dataclass
class Tally:
    """One fault's count. Keys are (kind, boot_id, seq), kind 'state' or 'event'."""

    fault: str
    injected: int
    produced: int  # state + event messages the daemon made (incl. ones loaded from a previous spool)
    acked: int  # PUBACKed by the broker
    pending: int  # still queued or spooled at the end (kept, not lost)
    dropped: int  # counted drops beyond the queue bound
    received: int  # distinct keys the persistent subscriber got
    arrivals: int  # messages the subscriber got, repeats included
    lost_broker: int  # acknowledged, never received
    recovery_s: list[float] = field(default_factory=list)
    notes: str = ""
    test: str = ""  # the pytest node id that produced it

    @property
    def lost_daemon(self) -> int:
        """Neither acknowledged, nor still queued/spooled, nor counted as dropped."""
        return self.produced - self.acked - self.pending - self.dropped

    @property
    def duplicated(self) -> int:
        return self.arrivals - self.received

    def line(self) -> str:
        rec = ", ".join(f"{r:.2f}" for r in self.recovery_s) or "-"
        return (f"{self.fault}: injected {self.injected}, produced {self.produced}, acked {self.acked}, "
                f"pending {self.pending}, dropped {self.dropped}, received {self.received}, lost(daemon) "
                f"{self.lost_daemon}, lost(broker) {self.lost_broker}, duplicated {self.duplicated}, recovery s [{rec}]"
                + (f"; {self.notes}" if self.notes else ""))

    def to_dict(self) -> dict:
        return {**asdict(self), "lost_daemon": self.lost_daemon, "duplicated": self.duplicated}


def tally(fault: str, injected: int, *, produced: Iterable[tuple[str, str, int]] | int,
          arrivals: list[tuple[str, str, int]], acked: int, dropped: int,
          pending: Iterable[tuple[str, str, int]] | int = (), recovery_s: list[float] | None = None,
          boots: set[str] | None = None, notes: str = "") -> Tally:
    """The ledger from what the daemon reports and what the subscriber got.

    `produced`/`pending` are key sets where they are known exactly (in-process runs) or counts (a
    subprocess's log). Arrivals of other boots are ignored when `boots` is given. lost(broker) = produced
    - dropped - pending - received; with key sets, a pending message that did arrive anyway (handed, then
    the link died before its PUBACK) is not counted twice."""
    if boots is not None:
        arrivals = [k for k in arrivals if k[1] in boots]
    got = Counter(arrivals)
    if isinstance(produced, int):
        n_produced, n_pending = produced, pending if isinstance(pending, int) else len(set(pending))
        lost_broker = n_produced - dropped - n_pending - len(got)
    else:
        made = set(produced)
        pend = set(pending) if not isinstance(pending, int) else set()
        got = Counter({k: v for k, v in got.items() if k in made})
        n_produced, n_pending = len(made), pending if isinstance(pending, int) else len(pend)
        lost_broker = len(made - set(got) - pend) - dropped
    return Tally(fault=fault, injected=injected, produced=n_produced, acked=acked, pending=n_pending,
                 dropped=dropped, received=len(got), arrivals=sum(got.values()), lost_broker=lost_broker,
                 recovery_s=recovery_s or [], notes=notes)


# -- subprocess logs --------------------------------------------------------------------------------
def daemon_counts(stderr: str) -> dict[str, int]:
    """From `moodmic run`'s log: states and events produced (final health line; one 'state:' line per
    change), and the publisher's final acknowledged/dropped/spooled plus what it loaded from a spool."""
    health = re.findall(r"health: (\d+) windows \((\d+) gated, (\d+) inferred\), (\d+) states, (\d+) queued, "
                        r"(\d+) dropped", stderr)
    closed = re.findall(r"MQTT closed: (\d+) acknowledged, (\d+) dropped, (\d+) spooled", stderr)
    loaded = re.findall(r"MQTT: (\d+) undelivered messages from .* are sent first", stderr)
    assert health, f"no health line in:\n{stderr[-3000:]}"
    consumed, gated, inferred, states, _queued, _dropped = map(int, health[-1])
    out = {"consumed": consumed, "gated": gated, "inferred": inferred, "states": states,
           "events": len(re.findall(r" edge\.daemon: state: ", stderr)),
           "loaded": int(loaded[-1]) if loaded else 0}
    if closed:
        out["acked"], out["dropped"], out["spooled"] = map(int, closed[-1])
    return out


# -- RELIABILITY.md ---------------------------------------------------------------------------------
def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    try:
        mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        mosq = "mosquitto ?"
    import paho.mqtt

    return (f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {mosq}, paho-mqtt {paho.mqtt.__version__}")


REPO = Path(__file__).resolve().parents[1]


def code_version(repo: Path = REPO) -> str:
    """The commit the daemon runs from, `+changes` when edge/ differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout.strip()

    return (git("rev-parse", "--short", "HEAD") or "?") + ("+changes" if git("status", "--porcelain", "--", "edge") else "")


def render_faults(tallies: list[Tally], command: str, wall_s: float) -> str:
    def rec(t: Tally) -> str:
        if not t.recovery_s:
            return "-"
        return f"{max(t.recovery_s):.2f}" if len(t.recovery_s) == 1 else \
            f"{np.median(t.recovery_s):.2f} (max {max(t.recovery_s):.2f})"

    lines = [f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')} ({wall_s:.0f} s), commit "
             f"{code_version()}; machine: {machine()}.", "",
             "| fault | injected | produced | acknowledged | received | lost (daemon) | lost (broker) | duplicated "
             "| recovery s | test |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in tallies:
        lines.append(f"| {t.fault} | {t.injected} | {t.produced} | {t.acked} | {t.received} | {t.lost_daemon} | "
                     f"{t.lost_broker} | {t.duplicated} | {rec(t)} | `{t.test}` |")
    lines += ["", "Per fault:", ""]
    for t in tallies:
        each = ", ".join(f"{r:.2f}" for r in t.recovery_s) or "-"
        lines.append(f"- **{t.fault}**: still queued/spooled at the end {t.pending}, dropped (counted) {t.dropped}, "
                     f"arrivals {t.arrivals}; recovery per injection (s): {each}." + (f" {t.notes}" if t.notes else ""))
    return "\n".join(lines)


def update_section(path: Path, name: str, body: str) -> None:
    """Replace the text between <!-- name:begin --> and <!-- name:end --> (appended if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
    path.write_text(text)
