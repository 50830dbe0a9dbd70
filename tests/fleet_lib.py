"""Helpers of the fleet and bridge runs (scripts/fleet.py, scripts/bridge.py): many `moodmic run`
processes on real speech, one subscriber that keeps only what the count needs, /proc sampling.

- `build_wavs`: k WAVs of RAVDESS speech (different clip orders), so the daemons do not change state
  in step; each daemon replays one in real time from its start.
- `Member`: one `moodmic run` subprocess with its own config (device id, state dir), log in a file.
- `FleetRecorder`: a persistent QoS 1 subscriber on `moodmic/#` and `homeassistant/#` that keeps, per
  device, (time, kind, boot_id, seq) of states and events, availability and health, plus the arrival
  time of every message (the broker's rate) and of discovery configs (their spread).
- `ProcSampler`: CPU seconds, VmRSS and VmHWM of named processes, the load average and the machine's
  busy share, read from /proc every few seconds.
- `ledger`: one daemon's produced / acknowledged / received / lost from its log and the subscriber.

Times are wall-clock (time.time()) so that the daemons' log timestamps line up with ours.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from broker import REPO, Broker, Recorder
from faults_lib import SR, daemon_counts, speech_chunks

TICK = os.sysconf("SC_CLK_TCK")


# -- audio ------------------------------------------------------------------------------------------
def build_wavs(root: Path, ravdess: Path, seconds: float, k: int) -> list[Path]:
    """k 16-bit WAVs of `seconds` of speech each (seeds 0..k-1), written clip by clip."""
    import soundfile as sf

    out = []
    for seed in range(k):
        path = root / f"speech{seed}.wav"
        with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:
            for part in speech_chunks(ravdess, seconds, seed):
                f.write(part)
        out.append(path)
    return out


# -- the daemons ------------------------------------------------------------------------------------
def write_config(path: Path, broker: Broker, device_id: str, *, state_interval: float = 1.0,
                 health_interval: float = 10.0, hop_seconds: float = 1.0, **mqtt: object) -> Path:
    """config.yaml of one fleet member: its own device id and state dir, a short heartbeat."""
    values = {"host": broker.host, "port": broker.port, "device_id": device_id,
              "state_dir": str(path.parent / "state"), "state_interval": state_interval,
              "health_interval": health_interval, **mqtt}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("mqtt:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items())
                    + f"windows:\n  hop_seconds: {hop_seconds}\n")
    return path


@dataclass
class Member:
    """One `moodmic run` (real-time replay of `wav`), stderr in `log`."""

    device: str
    cfg: Path
    wav: Path
    log: Path
    cwd: Path = REPO  # where `python -m edge.cli` finds edge/ (an exported commit, see export_code)
    proc: subprocess.Popen | None = None
    started: float = 0.0

    def start(self) -> Member:
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.cfg), "--source", f"file:{self.wav}",
                 "--mqtt", "on"], cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=err)
        self.started = time.time()
        return self

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def stop_all(members: list[Member], timeout: float = 60.0, batch: int = 10, pause: float = 0.2) -> None:
    """SIGTERM in batches (a hundred at once would all race for 2 cores within their 2 s close), then wait."""
    for i in range(0, len(members), batch):
        for m in members[i:i + batch]:
            m.terminate()
        time.sleep(pause)
    deadline = time.monotonic() + timeout
    for m in members:
        assert m.proc is not None
        try:
            m.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()


def export_code(rev: str, dest: Path) -> str:
    """edge/ as committed at `rev`, extracted into dest (the daemons run from there, not from a working tree
    that others may be editing); returns the short commit id."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", sha, "edge"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return sha


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_times(text: str, pattern: str) -> list[float]:
    """Wall-clock times of the log lines that contain `pattern` (logging's asctime, local time)."""
    out = []
    for line in text.splitlines():
        if pattern in line and (m := _STAMP.match(line)):
            out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


# -- the subscriber ---------------------------------------------------------------------------------
class FleetRecorder(Recorder):
    """Persistent QoS 1 subscriber that keeps compact per-device records instead of every message."""

    def __init__(self, broker: Broker, *, client_id: str = "fleet-recorder",
                 topics: tuple[str, ...] = ("moodmic/#", "homeassistant/#")) -> None:
        super().__init__(broker, list(topics), client_id=client_id)
        self.keys: dict[str, list[tuple[float, str, str, int]]] = defaultdict(list)  # device -> (t, kind, boot, seq)
        self.avail: dict[str, list[tuple[float, str, bool]]] = defaultdict(list)  # device -> (t, payload, retained)
        self.health: dict[str, list[tuple[float, dict]]] = defaultdict(list)
        self.discovery: list[tuple[float, str, bool]] = []  # (t, topic, retained)
        self.other: list[tuple[float, str, bytes]] = []  # (t, topic, payload) of anything else ($SYS, say)
        self.arrivals: list[float] = []
        self.connects: list[float] = []

    def _on_connect(self, client, userdata, flags, reason, props) -> None:  # type: ignore[no-untyped-def]
        if not reason.is_failure:
            self.connects.append(time.time())
        super()._on_connect(client, userdata, flags, reason, props)

    def _on_message(self, _client, _userdata, msg) -> None:  # type: ignore[no-untyped-def]
        t = time.time()
        parts = msg.topic.split("/")
        with self._cv:
            self.arrivals.append(t)
            if parts[0] == "moodmic" and len(parts) == 3:
                dev, kind = parts[1], parts[2]
                if kind in ("state", "event"):
                    d = json.loads(msg.payload)
                    self.keys[dev].append((t, kind, d["boot_id"], int(d["seq"])))
                elif kind == "availability":
                    self.avail[dev].append((t, msg.payload.decode(), bool(msg.retain)))
                elif kind == "health":
                    self.health[dev].append((t, json.loads(msg.payload)))
            elif parts[0] == "homeassistant" and parts[-1] == "config":
                self.discovery.append((t, msg.topic, bool(msg.retain)))
            else:
                self.other.append((t, msg.topic, bytes(msg.payload)))
            self._cv.notify_all()

    def online_since(self, t0: float) -> dict[str, float]:
        """device -> first live (not retained) `online` at or after t0."""
        with self._cv:
            out: dict[str, float] = {}
            for dev, rows in self.avail.items():
                t = next((t for t, p, retained in rows if t >= t0 and p == "online" and not retained), None)
                if t is not None:
                    out[dev] = t
            return out

    def wait_online(self, devices: set[str], since: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if devices <= set(self.online_since(since)):
                return True
            time.sleep(0.2)
        return False

    def wait_quiet(self, quiet_s: float, timeout: float) -> None:
        """Until nothing has arrived for `quiet_s` seconds (the broker has handed over what it held)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cv:
                last = self.arrivals[-1] if self.arrivals else 0.0
            if time.time() - last >= quiet_s:
                return
            time.sleep(0.2)


# -- /proc ------------------------------------------------------------------------------------------
def proc_sample(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds user+system, VmRSS kB, VmHWM kB) of a live process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
    hwm = re.search(r"^VmHWM:\s+(\d+)", status, re.M)
    return (cpu, int(rss.group(1)), int(hwm.group(1))) if rss and hwm else None


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v)


@dataclass
class ProcSampler:
    """Samples named processes every `every` seconds in a thread. A name may be re-pointed at a new pid
    (a restarted broker): its CPU is the sum over its pids, its RSS and HWM the largest seen."""

    every: float = 2.0
    pids: dict[str, int] = field(default_factory=dict)
    cpu: dict[tuple[str, int], float] = field(default_factory=dict)
    rss_max: dict[str, int] = field(default_factory=dict)
    rss_last: dict[str, int] = field(default_factory=dict)
    hwm: dict[str, int] = field(default_factory=dict)
    load: list[tuple[float, float]] = field(default_factory=list)  # (t, 1-min load average)
    busy: list[tuple[float, int, int]] = field(default_factory=list)  # (t, busy, total) jiffies

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="proc-sampler", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self.pids[name] = pid
        self.sample_one(name, pid)

    def sample_one(self, name: str, pid: int) -> None:
        s = proc_sample(pid)
        if s is None:
            return
        with self._lock:
            self.cpu[(name, pid)] = s[0]
            self.rss_last[name] = s[1]
            self.rss_max[name] = max(self.rss_max.get(name, 0), s[1])
            self.hwm[name] = max(self.hwm.get(name, 0), s[2])

    def sample(self) -> None:
        with self._lock:
            pids = list(self.pids.items())
        for name, pid in pids:
            self.sample_one(name, pid)
        t = time.time()
        self.load.append((t, float(Path("/proc/loadavg").read_text().split()[0])))
        self.busy.append((t, *_machine_ticks()))

    def cpu_of(self, name: str) -> float:
        with self._lock:
            return sum(v for (n, _), v in self.cpu.items() if n == name)

    def snapshot(self) -> dict[str, float]:
        """name -> CPU seconds so far (sampled now)."""
        self.sample()
        with self._lock:
            names = set(self.pids)
        return {n: self.cpu_of(n) for n in names}

    def busy_share(self, t0: float, t1: float) -> float:
        """The machine's busy share of all its CPUs between two sample times (all processes)."""
        rows = [b for b in self.busy if t0 <= b[0] <= t1]
        if len(rows) < 2:
            return float("nan")
        return (rows[-1][1] - rows[0][1]) / max(1, rows[-1][2] - rows[0][2])

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def start(self) -> ProcSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- the count --------------------------------------------------------------------------------------
def ledger(text: str, keys: list[tuple[float, str, str, int]]) -> dict:
    """One daemon's count from its log and the subscriber's (t, kind, boot_id, seq) of its device: lost
    (daemon) = produced - acknowledged - spooled - counted drops; lost (broker) = produced - dropped -
    spooled - received (what was acknowledged and never arrived; a spooled message that also arrived
    would make it negative, so it is reported as it is)."""
    c = daemon_counts(text)
    got = [(kind, boot, seq) for _, kind, boot, seq in keys]  # one device id, one process: one boot
    produced = c["states"] + c["events"] + c.get("loaded", 0)
    acked, dropped, spooled = c.get("acked", 0), c.get("dropped", 0), c.get("spooled", 0)
    received = len(set(got))
    return {"produced": produced, "acked": acked, "dropped": dropped, "spooled": spooled, "received": received,
            "duplicated": len(got) - received, "lost_daemon": produced - acked - spooled - dropped,
            "lost_broker": produced - dropped - spooled - received, "closed": "acked" in c,
            "states": c["states"], "events": c["events"], "consumed": c["consumed"]}


def peak_rate(times: list[float], t0: float | None = None, t1: float | None = None, width: float = 1.0) -> int:
    """Most arrivals in any `width`-second window (sliding) between t0 and t1."""
    ts = np.sort(np.array([t for t in times if (t0 is None or t >= t0) and (t1 is None or t < t1)]))
    if not len(ts):
        return 0
    return int((np.searchsorted(ts, ts + width, side="left") - np.arange(len(ts))).max())


def spread(values: list[float]) -> dict[str, float]:
    """min / median / p90 / max of a list (seconds), rounded."""
    if not values:
        return {}
    a = np.array(values)
    return {"n": len(a), "min": round(float(a.min()), 2), "median": round(float(np.median(a)), 2),
            "p90": round(float(np.percentile(a, 90)), 2), "max": round(float(a.max()), 2)}
