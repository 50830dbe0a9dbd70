#!/usr/bin/env python3
"""Soak: real speech through `moodmic run` for a long time; memory, threads and every window accounted.

    .venv/bin/python scripts/soak.py --minutes 60 --out RELIABILITY.md            # an hour of audio, --fast, --mqtt off
    .venv/bin/python scripts/soak.py --minutes 60 --mqtt on --out RELIABILITY.md  # ... published to a local mosquitto
    .venv/bin/python scripts/soak.py --minutes 60 --realtime --mqtt on --out RELIABILITY.md  # a wall-clock hour

The audio is RAVDESS speech clips (../shared/data/ravdess) back to back with 0.5 s pauses of quiet hiss,
written as a 16-bit WAV in a temporary folder. The daemon runs as a subprocess; its VmRSS and Threads
are read from /proc/<pid>/status while it runs. Warm-up is the first 10 % of the time after it logs
"listening to"; the RSS and thread count at its end are the baseline.

Checks (exit 1 if one fails): exit 0; consumed = gated + inferred = the windows the audio's length
gives; every state message produced is acknowledged, queued or counted as dropped (--mqtt off: printed);
with MQTT the queue never grows (health's `queued`) and the subscriber receives every acknowledged
message; RSS growth after warm-up (the largest sample minus the baseline) < 5 MB; no thread growth.

--out FILE rewrites the `soak` section of FILE (RELIABILITY.md), keeping the rows of other kinds of run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import soundfile as sf

from edge.data_path import data_dir

from faults_lib import SR, TimedRecorder, code_version, daemon_counts, machine, speech_chunks, update_section

RAVDESS = data_dir(REPO)
RSS_LIMIT_MB = 5.0
DEVICE = "soak"


def build_wav(path: Path, seconds: float, seed: int) -> int:
    """Write `seconds` of speech as 16-bit PCM, clip by clip (never the whole hour in memory); samples written."""
    n = 0
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:
        for part in speech_chunks(RAVDESS, seconds, seed):
            f.write(part)
            n += len(part)
    return n


def proc_status(pid: int) -> tuple[int, int] | None:
    """(VmRSS in kB, Threads) of a live process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
    return (int(rss.group(1)), int(threads.group(1))) if rss and threads else None


def expected_windows(samples: int, hop_seconds: float) -> int:
    """Windows a stream of `samples` gives: frames every hop_length, a window of n_frames every hop."""
    from edge.bundle import load_bundle

    p = load_bundle().features
    frames = 0 if samples < p.n_fft else 1 + (samples - p.n_fft) // p.hop_length
    return 0 if frames < p.n_frames else 1 + (frames - p.n_frames) // p.hop_frames(hop_seconds)


def duration(minutes: float) -> str:
    return f"{minutes / 60:g} h" if minutes >= 60 and minutes % 60 == 0 else f"{minutes:g} min"


def soak(minutes: float, *, realtime: bool = False, mqtt: str = "off", every: float | None = None,
         workdir: Path | None = None, seed: int = 0, log=print) -> dict:
    """Run one soak; returns its figures and checks (`ok`)."""
    if not (RAVDESS / "manifest.csv").is_file():
        raise SystemExit(f"soak: the RAVDESS corpus is not at {RAVDESS}")
    version = code_version()  # before the run: what the daemon process loads
    tmp = Path(workdir or tempfile.mkdtemp(prefix="moodmic-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    every = every or (5.0 if realtime else 0.05)
    t = time.monotonic()
    wav = tmp / "soak.wav"
    samples = build_wav(wav, minutes * 60, seed)
    log(f"soak: {samples / SR / 60:.1f} min of speech, {wav.stat().st_size / 1e6:.0f} MB, "
        f"in {time.monotonic() - t:.0f} s")

    health_interval = 10.0 if realtime else 1.0
    values = {"state_dir": str(tmp / "state"), "state_interval": 1.0, "health_interval": health_interval,
              "device_id": DEVICE}
    broker = rec = None
    if mqtt == "on":
        from broker import Broker

        broker = Broker(tmp / "broker").start()
        rec = TimedRecorder(broker, [f"moodmic/{DEVICE}/#"]).start()
        values.update(host=broker.host, port=broker.port)
    cfg = tmp / "config.yaml"
    cfg.write_text("mqtt:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items()))
    cmd = [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", f"file:{wav}", "--mqtt", mqtt,
           *([] if realtime else ["--fast"])]
    out, err = tmp / "stdout.jsonl", tmp / "stderr.log"
    samples_rt: list[tuple[float, int, int]] = []  # (t, rss kB, threads)
    t_listen = None
    try:
        with open(out, "w") as o, open(err, "w") as e:
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=o, stderr=e)
            while proc.poll() is None:
                st = proc_status(proc.pid)
                now = time.monotonic()
                if st:
                    samples_rt.append((now, *st))
                if t_listen is None and "edge.daemon: listening to" in err.read_text(errors="replace"):
                    t_listen = now
                time.sleep(every)
            wall = time.monotonic() - t0
        stderr = err.read_text(errors="replace")
        printed = sum(1 for line in out.read_text().splitlines() if line.startswith("{"))  # --mqtt off: states
        if rec is not None:  # what the subscriber holds once the last PUBACKs are in
            time.sleep(1.0)
            rec.stop()
    finally:
        if broker is not None:
            broker.stop()
        if workdir is None:  # the WAV alone is 115 MB an hour
            shutil.rmtree(tmp, ignore_errors=True)

    # memory and threads after warm-up
    t_listen = t_listen or samples_rt[0][0]
    t_end = samples_rt[-1][0]
    warm = t_listen + 0.1 * (t_end - t_listen)
    after = [s for s in samples_rt if s[0] >= warm] or samples_rt[-1:]
    base_rss, base_threads = after[0][1], after[0][2]
    end_rss = after[-1][1]
    max_rss, max_threads = max(s[1] for s in after), max(s[2] for s in after)

    c = daemon_counts(stderr)
    health_final = re.findall(r"health: .*", stderr)[-1]
    produced = c["states"] + c["events"]
    want_windows = expected_windows(samples, 1.0)
    r = {
        "run": f"{duration(minutes)}, {'real time' if realtime else '--fast'}, --mqtt {mqtt}",
        "realtime": realtime, "mqtt": mqtt,
        "command": f"python scripts/soak.py --minutes {minutes:g}{' --realtime' if realtime else ''} --mqtt {mqtt}",
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "code": version,
        "audio_min": round(samples / SR / 60, 1), "wall_s": round(wall, 1), "rc": proc.returncode,
        "consumed": c["consumed"], "gated": c["gated"], "inferred": c["inferred"], "expected_windows": want_windows,
        "states": c["states"], "events": c["events"], "health": health_final,
        "rss_start_mb": round(base_rss / 1024, 1), "rss_end_mb": round(end_rss / 1024, 1),
        "rss_max_mb": round(max_rss / 1024, 1), "rss_growth_mb": round((max_rss - base_rss) / 1024, 2),
        "rss_listening_mb": round(next((s for s in samples_rt if s[0] >= t_listen), samples_rt[-1])[1] / 1024, 1),
        "threads_start": base_threads, "threads_max": max_threads,
        "samples": len(samples_rt), "warmup_s": round(warm - t0, 1),
    }
    checks = {
        "exit 0": proc.returncode == 0,
        "consumed = gated + inferred": c["consumed"] == c["gated"] + c["inferred"],
        "consumed = windows of the audio": c["consumed"] == want_windows,
        f"RSS growth < {RSS_LIMIT_MB:g} MB": (max_rss - base_rss) / 1024 < RSS_LIMIT_MB,
        "no thread growth": max_threads == base_threads,
    }
    if mqtt == "on":
        health = [json.loads(m.payload) for m in rec.on(f"moodmic/{DEVICE}/health")]
        keys = [k for _, k in rec.keyed(f"moodmic/{DEVICE}")]
        r.update(acked=c["acked"], dropped=c["dropped"], spooled=c["spooled"], received=len(set(keys)),
                 duplicated=len(keys) - len(set(keys)), max_queued=max((h["queued"] for h in health), default=0),
                 health_messages=len(health))
        checks["produced = acked + queued/spooled + dropped"] = produced == c["acked"] + c["spooled"] + c["dropped"]
        checks["nothing dropped or left queued"] = c["dropped"] == 0 and c["spooled"] == 0
        checks["queue does not grow (health queued <= 20)"] = r["max_queued"] <= 20 and bool(health)
        checks["subscriber received every acknowledged message"] = r["received"] == c["acked"]
    else:
        r.update(acked=printed, dropped=0, spooled=0)
        checks["states produced = printed"] = printed == c["states"]
    r["checks"] = checks
    r["ok"] = all(checks.values())
    return r


def render(rows: list[dict]) -> str:
    lines = ["| run | audio | wall | windows (gated / inferred) | states + events | acknowledged / spooled / dropped "
             "| received | RSS MB: after warm-up / end / max (growth) | threads | checks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        failed = [k for k, ok in r["checks"].items() if not ok]
        lines.append(
            f"| {r['run']} | {duration(r['audio_min'])} | {r['wall_s']:.0f} s | {r['consumed']} ({r['gated']} / "
            f"{r['inferred']}) | {r['states']} + {r['events']} | {r['acked']} / {r['spooled']} / {r['dropped']} | "
            f"{r.get('received', '-')} | {r['rss_start_mb']} / {r['rss_end_mb']} / {r['rss_max_mb']} "
            f"(+{r['rss_growth_mb']}) | {r['threads_start']} -> {r['threads_max']} | "
            f"{'all ' + str(len(r['checks'])) + ' pass' if not failed else 'FAILED: ' + ', '.join(failed)} |")
    lines += [""]
    for r in rows:
        lines.append(f"- {r['run']}: `{r['command']}`, {r['date']}, commit {r.get('code', '?')}; {r['machine']}. "
                     "Final health line: "
                     f"`{r['health']}`. RSS when it started listening {r['rss_listening_mb']} MB; "
                     f"warm-up {r['warmup_s']} s; "
                     f"{r['samples']} samples" + (f"; health `queued` at most {r['max_queued']} over "
                                                   f"{r['health_messages']} health messages" if "max_queued" in r
                                                   else "") + ".")
    return "\n".join(lines)


def write_report(path: Path, result: dict) -> None:
    """The `soak` section: one row per kind of run, the others' rows kept (stored as JSON in the section)."""
    text = path.read_text() if path.exists() else ""
    m = re.search(r"<!-- soak-data (.*?) -->", text, re.S)
    rows = [row for row in (json.loads(m.group(1)) if m else []) if row["run"] != result["run"]] + [result]
    rows.sort(key=lambda row: (row["realtime"], row["audio_min"], row["mqtt"]))
    update_section(path, "soak", render(rows) + f"\n\n<!-- soak-data {json.dumps(rows)} -->")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="minutes of audio (default 60)")
    ap.add_argument("--realtime", action="store_true", help="replay in real time instead of --fast")
    ap.add_argument("--mqtt", choices=("off", "on"), default="off", help="on: publish to a mosquitto started here")
    ap.add_argument("--every", type=float, help="seconds between /proc samples (default 0.05, real time 5)")
    ap.add_argument("--workdir", type=Path, help="keep the WAV, config and logs here (default: a temp folder)")
    ap.add_argument("--out", type=Path, help="update the soak section of this file (RELIABILITY.md)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON")
    a = ap.parse_args(argv)
    r = soak(a.minutes, realtime=a.realtime, mqtt=a.mqtt, every=a.every, workdir=a.workdir)
    print(render([r]))
    for name, ok in r["checks"].items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    if a.out:
        if r["ok"]:
            write_report(a.out, r)
        else:
            print(f"soak: {a.out} not updated (a check failed)", file=sys.stderr)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
