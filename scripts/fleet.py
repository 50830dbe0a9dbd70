#!/usr/bin/env python3
"""Fleet: N `moodmic run` daemons (a care home, a large house) on one local mosquitto, which is
SIGKILLed and restarted during the run; every state and event accounted for by (device, boot_id, seq).

    .venv/bin/python scripts/fleet.py --daemons 100 --minutes 10 --kills 3 --out RELIABILITY.md
    .venv/bin/python scripts/fleet.py --daemons 10 --minutes 1 --kills 1     # the test's size (tests/test_fleet.py)

Each daemon is a real `moodmic run` subprocess with its own config (device id fleet-NNN, state dir),
replaying RAVDESS speech in real time (one of 4 WAVs, so they do not change state in step) with a 1 s
state heartbeat. A persistent QoS 1 subscriber (tests/fleet_lib.py) records every state and event
by (device, boot_id, seq), availability, health and discovery. After all daemons are online the clock
starts; the broker is SIGKILLed at evenly spaced times, down for --down seconds each time, then
restarted on the same port; once, between start and the first kill, `online` is published on
`homeassistant/status` (Home Assistant restarting) to see how the discovery re-sends spread. At the
end every daemon gets SIGTERM and its log's `MQTT closed: N acknowledged, D dropped, S spooled` line
and final health line give its side of the count.

Per daemon: lost (daemon) = produced - acknowledged - spooled - counted drops (must be 0); lost
(broker) = produced - dropped - spooled - received (acknowledged, never delivered: the broker's own loss
when SIGKILLed, reported apart); CPU % of one core and RSS from /proc over the measured minutes;
lag = the largest health `uptime_s - audio_s` (how far its real-time replay fell behind the clock).
Per restart: seconds from the broker listening again to each daemon's `MQTT connected` log line, the
most reconnects in any one second, and how the discovery re-sends spread.

--out FILE rewrites the `fleet` section of FILE, keeping the rows of runs of other sizes.
Exit 1 when a daemon lost a message or was not back after a restart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

# the test helpers and edge/ from this checkout, so imports follow the path (E402)
import numpy as np

from edge.data_path import data_dir

from broker import Broker
from faults_lib import code_version, machine, update_section
from fleet_lib import (
    FleetRecorder,
    Member,
    ProcSampler,
    build_wavs,
    export_code,
    ledger,
    log_times,
    peak_rate,
    spread,
    stop_all,
    write_config,
)

RAVDESS = data_dir(REPO)
WAVS = 4


def fleet(daemons: int, minutes: float, kills: int, *, down_s: float = 5.0, hop_seconds: float = 1.0,
          health_interval: float = 10.0, start_gap_s: float = 0.2, commit: str | None = None,
          workdir: Path | None = None, log=print) -> dict:
    """Run one fleet; returns its figures, per daemon and per restart, and `ok`. With `commit`, the daemons
    run edge/ exported from that commit instead of this working tree."""
    if not (RAVDESS / "manifest.csv").is_file():
        raise SystemExit(f"fleet: the RAVDESS corpus is not at {RAVDESS}")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="moodmic-fleet-"))
    tmp.mkdir(parents=True, exist_ok=True)
    code = REPO if commit is None else tmp / "code"
    version = code_version() if commit is None else export_code(commit, code)
    measured = minutes * 60
    # the audio outlasts start-up (staggered), the measured minutes and the stop
    wavs = build_wavs(tmp, RAVDESS, daemons * start_gap_s + measured + 120, WAVS)
    broker = Broker(tmp / "broker").start()
    rec = FleetRecorder(broker).start()
    broker.wait_saved(since=time.time())  # the subscriber's session survives the first SIGKILL
    sampler = ProcSampler(every=2.0).start()
    sampler.watch("broker", broker.proc.pid)
    sampler.watch("harness", os.getpid())
    members = [Member(f"fleet-{i:03d}", tmp / f"d{i:03d}" / "config.yaml", wavs[i % WAVS], tmp / f"d{i:03d}" / "log",
                      cwd=code) for i in range(daemons)]
    restarts: list[dict] = []
    t_ha = None
    try:
        t_launch = time.time()
        for m in members:
            write_config(m.cfg, broker, m.device, health_interval=health_interval, hop_seconds=hop_seconds)
            m.start()
            sampler.watch(m.device, m.proc.pid)
            time.sleep(start_gap_s)
        if not rec.wait_online({m.device for m in members}, t_launch, timeout=60 + daemons):
            missing = {m.device for m in members} - set(rec.online_since(t_launch))
            raise SystemExit(f"fleet: not online within {60 + daemons} s: {sorted(missing)[:10]}")
        t0 = time.time()
        log(f"fleet: {daemons} daemons online {t0 - t_launch:.0f} s after the first start")
        cpu0 = sampler.snapshot()
        kill_at = [t0 + measured * (k + 1) / (kills + 1) for k in range(kills)]
        ha_at = t0 + (kill_at[0] - t0 if kills else measured) / 2
        for at in kill_at:
            if t_ha is None and ha_at < at:
                time.sleep(max(0.0, ha_at - time.time()))
                t_ha = time.time()
                rec.client.publish("homeassistant/status", "online", qos=1)
                log("fleet: published online on homeassistant/status")
            time.sleep(max(0.0, at - time.time()))
            t_kill = time.time()
            broker.kill()
            time.sleep(down_s)
            t_start = time.time()
            broker.start()
            t_back = time.time()
            sampler.watch("broker", broker.proc.pid)
            # A daemon may connect between mosquitto listening and start() seeing it: count it from t_start.
            restarts.append({"t_kill": t_kill, "t_start": t_start, "t_back": t_back})
            log(f"fleet: broker SIGKILLed at {t_kill - t0:.0f} s, back {t_back - t_kill:.1f} s later")
        time.sleep(max(0.0, t0 + measured - time.time()))
        t1 = time.time()
        cpu1 = sampler.snapshot()
        rss = dict(sampler.rss_last)
        stop_all(members)
        t_stopped = time.time()
        rec.wait_quiet(3.0, timeout=60)
        sampler.stop()
        broker_cpu = sampler.cpu_of("broker")
        rec.stop()
    finally:
        stop_all([m for m in members if m.proc is not None], timeout=10)
        broker.stop()
    log(f"fleet: stopped in {t_stopped - t1:.1f} s")

    # -- per daemon
    rows = []
    for m in members:
        text = m.text()
        r = {"device": m.device, "rc": m.proc.returncode, **ledger(text, rec.keys.get(m.device, []))}
        r["cpu_pct"] = round(100 * (cpu1.get(m.device, 0) - cpu0.get(m.device, 0)) / (t1 - t0), 1)
        r["rss_mb"] = round(rss.get(m.device, 0) / 1024, 1)
        r["hwm_mb"] = round(sampler.hwm.get(m.device, 0) / 1024, 1)
        lags = [h["uptime_s"] - h["audio_s"] for _, h in rec.health.get(m.device, []) if "uptime_s" in h]
        r["lag_s"] = round(max(lags), 1) if lags else None
        overruns = [h.get("overruns", 0) for _, h in rec.health.get(m.device, [])]
        r["overruns"] = max(overruns, default=0)
        connected = log_times(text, "MQTT connected")
        r["back_s"] = []
        for i, rs in enumerate(restarts):
            until = restarts[i + 1]["t_kill"] if i + 1 < len(restarts) else t_stopped
            t = next((t for t in connected if rs["t_start"] <= t < until), None)
            r["back_s"].append(None if t is None else round(max(0.0, t - rs["t_back"]), 2))
        rows.append(r)

    # -- per restart
    for i, rs in enumerate(restarts):
        until = restarts[i + 1]["t_kill"] if i + 1 < len(restarts) else t_stopped
        back = [r["back_s"][i] for r in rows if r["back_s"][i] is not None]
        online = rec.online_since(rs["t_back"])
        disc = [t for t, _, retained in rec.discovery if rs["t_back"] <= t < until and not retained]
        rs.update({
            "down_s": round(rs["t_back"] - rs["t_kill"], 1),
            "subscriber_s": round(min((t for t in rec.connects if t >= rs["t_back"]), default=np.nan) - rs["t_back"], 2),
            "back": spread(back), "not_back": daemons - len(back),
            "online_seen": sum(1 for t in online.values() if t < until),
            "peak_reconnects_1s": peak_rate([rs["t_back"] + b for b in back]),
            "discovery": len(disc), "discovery_spread_s": round(max(disc) - min(disc), 2) if disc else None,
            "peak_discovery_1s": peak_rate(disc), "peak_msgs_1s": peak_rate(rec.arrivals, rs["t_back"], until),
            "at_s": round(rs["t_kill"] - t0),
        })
    ha = None
    if t_ha is not None:
        until = restarts[0]["t_kill"] if restarts else t1
        disc = [t for t, _, retained in rec.discovery if t_ha <= t < until and not retained]
        ha = {"at_s": round(t_ha - t0), "discovery": len(disc),
              "spread_s": round(max(disc) - t_ha, 2) if disc else None,
              "first_s": round(min(disc) - t_ha, 2) if disc else None,
              "peak_discovery_1s": peak_rate(disc), "peak_msgs_1s": peak_rate(rec.arrivals, t_ha, t_ha + 30)}

    load = [v for t, v in sampler.load if t0 <= t <= t1]
    tot = {k: sum(r[k] for r in rows) for k in ("produced", "acked", "received", "lost_daemon", "lost_broker",
                                                  "duplicated", "dropped", "spooled")}
    res = {
        "run": f"{daemons} daemons, {minutes:g} min, {kills} broker SIGKILL{'s' if kills != 1 else ''}",
        "command": f"python scripts/fleet.py --daemons {daemons} --minutes {minutes:g} --kills {kills}"
                   + (f" --down {down_s:g}" if down_s != 5.0 else "") + (f" --commit {version}" if commit else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "code": version,
        "daemons": daemons, "minutes": minutes, "kills": kills, "down_s": down_s, "hop_s": hop_seconds,
        "start_s": round(t0 - t_launch, 1), "stop_s": round(t_stopped - t1, 1), **tot,
        "cpu_pct": spread([r["cpu_pct"] for r in rows]), "rss_mb": spread([r["rss_mb"] for r in rows]),
        "hwm_mb": spread([r["hwm_mb"] for r in rows]),
        "cpu_pct_sum": round(sum(r["cpu_pct"] for r in rows), 1),
        "broker_cpu_pct": round(100 * (broker_cpu - cpu0.get("broker", 0)) / (t1 - t0), 1),
        "broker_hwm_mb": round(sampler.hwm.get("broker", 0) / 1024, 1),
        "harness_cpu_pct": round(100 * (cpu1.get("harness", 0) - cpu0.get("harness", 0)) / (t1 - t0), 1),
        "load": spread(load), "machine_busy_pct": round(100 * sampler.busy_share(t0, t1), 1),
        "lag_s": spread([r["lag_s"] for r in rows if r["lag_s"] is not None]),
        "overruns": sum(r["overruns"] for r in rows),
        "msgs_per_s": round(len([t for t in rec.arrivals if t0 <= t < t1]) / (t1 - t0), 1),
        "peak_msgs_1s": peak_rate(rec.arrivals, t0, t1),
        "restarts": [{k: v for k, v in rs.items() if not k.startswith("t_")} for rs in restarts], "ha_online": ha,
        "per_daemon": rows,
    }
    checks = {
        "every daemon exited 0": all(r["rc"] == 0 for r in rows),
        "every daemon logged its final count": all(r["closed"] for r in rows),
        "lost (daemon) = 0 for every daemon": all(r["lost_daemon"] == 0 for r in rows),
        "every daemon back after every restart": all(rs["not_back"] == 0 for rs in res["restarts"]),
    }
    res["checks"], res["ok"] = checks, all(checks.values())
    if workdir is None and res["ok"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        res["workdir"] = str(tmp)
    return res


# -- the report -------------------------------------------------------------------------------------
def _s(d: dict, unit: str = "") -> str:
    return f"{d['median']:g} / {d['max']:g}{unit}" if d else "-"


def render(rows: list[dict]) -> str:
    out = ["| run | produced | acknowledged | received | lost (daemon) | lost (broker) | duplicated | "
           "all back after each restart, s | per daemon CPU % of a core (median / max) | per daemon RSS MB "
           "(median / max; peak) | broker CPU % / peak RSS MB | load 1-min (median / max) | lag s (median / max) "
           "| checks |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        failed = [k for k, ok in r["checks"].items() if not ok]
        back = ", ".join(f"{rs['back']['max']:g}" if rs["back"] else "-" for rs in r["restarts"]) or "-"
        out.append(
            f"| {r['run']} | {r['produced']} | {r['acked']} | {r['received']} | {r['lost_daemon']} | {r['lost_broker']} | "
            f"{r['duplicated']} | {back} | {_s(r['cpu_pct'])} | {_s(r['rss_mb'])}; {r['hwm_mb'].get('max', '-')} | "
            f"{r['broker_cpu_pct']} / {r['broker_hwm_mb']} | {_s(r['load'])} | {_s(r['lag_s'])} | "
            f"{'all ' + str(len(r['checks'])) + ' pass' if not failed else 'FAILED: ' + ', '.join(failed)} |")
    for r in rows:
        out += ["", f"**{r['run']}**: `{r['command']}`, {r['date']}, commit {r['code']}; {r['machine']}. "
                f"All {r['daemons']} online {r['start_s']} s after the first start (one every 0.2 s), then "
                f"{r['minutes']:g} min measured; {r['msgs_per_s']} messages/s at the subscriber on average, at most "
                f"{r['peak_msgs_1s']} in one second; the daemons together used {r['cpu_pct_sum']} % of a core, the "
                f"subscriber and sampler {r['harness_cpu_pct']} %, the machine was {r['machine_busy_pct']} % busy "
                f"(every process, a training job at nice 8 included); {r['overruns']} overruns; counted drops "
                f"{r['dropped']}, spooled at SIGTERM {r['spooled']}; all stopped (SIGTERM, 10 at a time) in "
                f"{r['stop_s']} s.", "",
                "| broker SIGKILL at | down s | subscriber back s | daemons back s: first / median / p90 / max "
                "| not back | most reconnects in 1 s | discovery configs re-sent | ... over s | most in 1 s "
                "| most messages in 1 s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for rs in r["restarts"]:
            b = rs["back"]
            out.append(f"| {rs['at_s']} s | {rs['down_s']} | {rs['subscriber_s']} | "
                       + (f"{b['min']} / {b['median']} / {b['p90']} / {b['max']}" if b else "-")
                       + f" | {rs['not_back']} | {rs['peak_reconnects_1s']} | {rs['discovery']} | "
                       f"{rs['discovery_spread_s']} | {rs['peak_discovery_1s']} | {rs['peak_msgs_1s']} |")
        if r.get("ha_online"):
            h = r["ha_online"]
            out += ["", f"`online` on `homeassistant/status` at {h['at_s']} s: {h['discovery']} discovery configs "
                    f"re-sent, the first after {h['first_s']} s, the last after {h['spread_s']} s, at most "
                    f"{h['peak_discovery_1s']} in one second ({h['peak_msgs_1s']} messages of all kinds)."]
    return "\n".join(out)


def render_daemons(r: dict) -> str:
    out = [f"<details><summary>{r['run']}: every daemon</summary>", "",
           "| device | produced | acknowledged | received | lost (daemon) | lost (broker) | duplicated | "
           "back after each restart, s | CPU % | RSS MB (peak) | lag s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in r["per_daemon"]:
        back = ", ".join("-" if b is None else f"{b:g}" for b in d["back_s"]) or "-"
        out.append(f"| {d['device']} | {d['produced']} | {d['acked']} | {d['received']} | {d['lost_daemon']} | "
                   f"{d['lost_broker']} | {d['duplicated']} | {back} | {d['cpu_pct']} | {d['rss_mb']} "
                   f"({d['hwm_mb']}) | {d['lag_s']} |")
    return "\n".join(out + ["", "</details>"])


def write_report(path: Path, result: dict) -> None:
    """The `fleet` section: one row per fleet size, the others kept (as JSON inside the section)."""
    text = path.read_text() if path.exists() else ""
    m = re.search(r"<!-- fleet-data (.*?) -->", text, re.S)
    rows = [row for row in (json.loads(m.group(1)) if m else []) if row["daemons"] != result["daemons"]] + [result]
    rows.sort(key=lambda row: row["daemons"])
    body = render(rows) + "\n\n" + "\n\n".join(render_daemons(row) for row in rows)
    update_section(path, "fleet", body + f"\n\n<!-- fleet-data {json.dumps(rows)} -->")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--daemons", type=int, default=10, help="how many `moodmic run` processes (default 10)")
    ap.add_argument("--minutes", type=float, default=1.0, help="measured minutes once all are online (default 1)")
    ap.add_argument("--kills", type=int, default=1, help="broker SIGKILL + restarts, evenly spaced (default 1)")
    ap.add_argument("--down", type=float, default=5.0, help="seconds the broker stays down each time (default 5)")
    ap.add_argument("--commit", help="run the daemons from edge/ as committed at this revision (default: the working tree)")
    ap.add_argument("--workdir", type=Path, help="keep WAVs, configs and logs here (default: a temp folder)")
    ap.add_argument("--out", type=Path, help="update the fleet section of this file (RELIABILITY.md)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON")
    a = ap.parse_args(argv)
    r = fleet(a.daemons, a.minutes, a.kills, down_s=a.down, commit=a.commit, workdir=a.workdir)
    print(render([r]))
    for name, ok in r["checks"].items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    if a.out:
        write_report(a.out, r)  # written also when a check failed: the table says FAILED and why
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
