#!/usr/bin/env python3
"""Bridge: daemons on a home broker, a mosquitto bridge forwarding `moodmic/#` at QoS 1 to a central
broker, a subscriber on the central one; one side restarted mid-stream; every message counted at each hop.

    .venv/bin/python scripts/bridge.py --out RELIABILITY.md        # every fault below, one run each
    .venv/bin/python scripts/bridge.py --fault home-sigterm        # one of them

Two real mosquittos on 127.0.0.1 (tests/broker.py: persistence, autosave every second). The home
broker carries the bridge (`BRIDGE` below, what README shows: `cleansession false`, QoS 1 out, Home
Assistant's discovery out and its status in). --daemons `moodmic run` processes (real RAVDESS speech,
real time, 1 s heartbeat) publish to the home broker. Two persistent QoS 1 subscribers record
(device, kind, boot_id, seq): one on the central broker (what Home Assistant there would get) and one
on the home broker, so a loss can be placed: inside the daemon (produced - acknowledged - spooled -
counted drops), at the home broker (acknowledged, never delivered even locally), or on the bridge and
the central broker (delivered at home, never at the central one). `online` published on the central
`homeassistant/status` checks that discovery comes back across the bridge.

Faults, each in a fresh pair of brokers, after 10 s of traffic (Home Assistant's `online` at their start),
the broker down --down s:
- central-sigkill: the central broker SIGKILLed and restarted: the bridge link drops, the home broker
  queues for it (its persistent bridge session) and the bridge reconnects with its own back-off;
- home-sigterm: the home broker (and so the bridge) stopped cleanly and started (`systemctl restart`);
- home-sigkill: the home broker SIGKILLed and restarted (a crash or a power cut of the home server);
- central-away: the central broker stopped for 30 s while the home broker may queue only 50 messages
  for the bridge (`max_queued_messages`): where the bridge's queue overflows.
Then 10 s more once everything is reconnected, SIGTERM to the daemons, and the subscribers
wait until nothing more arrives.

--out FILE rewrites the `bridge` section of FILE. Exit 1 when a daemon lost a message or, for
home-sigterm and central-sigkill, anything was lost end to end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

# the test helpers and edge/ from this checkout, so imports follow the path (E402)
from edge.data_path import data_dir

from broker import Broker
from faults_lib import code_version, machine, update_section
from fleet_lib import FleetRecorder, Member, build_wavs, export_code, ledger, log_times, stop_all, write_config

RAVDESS = data_dir(REPO)
BRIDGE_ID = "moodmic-home-bridge"
# The bridge on the home broker, after its own listener/persistence lines; {port} is the central one's.
BRIDGE = """connection central
address 127.0.0.1:{port}
remote_clientid moodmic-home-bridge
cleansession false
restart_timeout 2 30
topic moodmic/# out 1
topic homeassistant/sensor/# out 1
topic homeassistant/event/# out 1
topic homeassistant/status in 1
"""
FAULTS = ("central-sigkill", "home-sigterm", "home-sigkill", "central-away")
LOSSLESS = ("central-sigkill", "home-sigterm")  # where the run fails if anything is lost end to end
# central-away: the central broker stopped for AWAY_S while the home broker may queue only QUEUE_CAP
# messages for the bridge (mosquitto's max_queued_messages, 1000 by default): what it drops beyond that
AWAY_S, QUEUE_CAP = 30.0, 50


def run_fault(fault: str, *, daemons: int = 3, before_s: float = 10.0, down_s: float = 3.0, after_s: float = 10.0,
              workdir: Path, code: Path = REPO, wav: Path, log=print) -> dict:
    """One fault in a fresh pair of brokers; returns the count per hop and the recovery times."""
    central = Broker(workdir / "central")
    home = Broker(workdir / "home")
    cap = f"max_queued_messages {QUEUE_CAP}\n" if fault == "central-away" else ""
    home.conf.write_text(home.conf.read_text() + cap + BRIDGE.format(port=central.port))
    central.start()
    at_central = FleetRecorder(central, client_id="central-recorder",
                               topics=("moodmic/#", "homeassistant/#", "$SYS/broker/connection/#"))
    at_central.start()
    home.start()
    at_home = FleetRecorder(home, client_id="home-recorder", topics=("moodmic/#",)).start()
    t = time.time()
    central.wait_saved(since=t)  # both subscribers' sessions survive a SIGKILL from now on
    home.wait_saved(since=t)
    members = [Member(f"home-{i}", workdir / f"d{i}" / "config.yaml", wav, workdir / f"d{i}" / "log", cwd=code)
               for i in range(daemons)]
    r: dict = {"fault": fault}
    try:
        t_launch = time.time()
        for m in members:
            write_config(m.cfg, home, m.device, health_interval=5.0)
            m.start()
        devices = {m.device for m in members}
        if not at_central.wait_online(devices, t_launch, timeout=60):
            raise SystemExit(f"bridge: not online at the central broker within 60 s: {at_central.online_since(t_launch)}")
        # Home Assistant (on the central broker) restarts: every device's discovery must come back across
        # the bridge before the fault (each device waits up to 5 s before re-sending it)
        t_ha = time.time()
        at_central.client.publish("homeassistant/status", "online", qos=1)
        time.sleep(before_s)
        broker = central if fault.startswith("central") else home
        t_kill = time.time()
        broker.kill() if fault.endswith("sigkill") else broker.stop()
        time.sleep(AWAY_S if fault == "central-away" else down_s)
        broker.start()
        t_back = time.time()
        log(f"bridge: {fault}: down {t_back - t_kill:.1f} s")
        # The bridge is back when it publishes its state `1` again (its own notification); a restarted home
        # broker starts its bridge before it listens, so anything after the kill counts (then about 0 s).
        _wait(lambda: _bridge_up_since(at_central, t_kill), 90)
        if broker is home:
            _wait(lambda: all(max(log_times(m.text(), "MQTT connected"), default=0) >= t_kill for m in members), 90)
        time.sleep(after_s)
        t_end = time.time()
        stop_all(members)
        at_central.wait_quiet(5.0, timeout=90)
        at_home.wait_quiet(2.0, timeout=30)
        at_central.stop()
        at_home.stop()
    finally:
        stop_all([m for m in members if m.proc is not None], timeout=10)
        home.stop()
        central.stop()
    r["drop_notices"] = home.log_text().count("Outgoing messages are being dropped")

    rows = []
    for m in members:
        text = m.text()
        d = ledger(text, at_central.keys.get(m.device, []))
        home_keys = {(k, b, s) for _, k, b, s in at_home.keys.get(m.device, [])}
        central_keys = {(k, b, s) for _, k, b, s in at_central.keys.get(m.device, [])}
        d.update(device=m.device, rc=m.proc.returncode, received_home=len(home_keys),
                 lost_home=d["produced"] - d["dropped"] - d["spooled"] - len(home_keys),
                 lost_bridge=len(home_keys - central_keys), lost_total=d["lost_broker"],
                 back_s=[max(0.0, round(t - t_back, 2)) for t in log_times(text, "MQTT connected") if t >= t_kill][:1])
        rows.append(d)
    disc = [t for t, _, retained in at_central.discovery if t_ha <= t < t_kill and not retained]
    tot = {k: sum(d[k] for d in rows) for k in ("produced", "acked", "received_home", "received", "dropped",
                                                  "spooled", "lost_daemon", "lost_home", "lost_bridge", "lost_total",
                                                  "duplicated")}
    # recovery: the first arrival at the central broker, after the restart, of a message not seen before it
    seen = {(d, *k[1:]) for d, keys in at_central.keys.items() for k in keys if k[0] < t_back}
    first_new = min((k[0] for d, keys in at_central.keys.items() for k in keys
                     if k[0] >= t_back and (d, *k[1:]) not in seen), default=None)
    linked = _bridge_up_since(at_central, t_kill)
    back = [d["back_s"][0] for d in rows if d["back_s"]] if broker is home else []
    r.update(tot, daemons=daemons, down_s=round(t_back - t_kill, 1),
             bridge_back_s=None if linked is None else max(0.0, round(linked - t_back, 2)),
             daemons_back_s=(max(back) if len(back) == daemons else None) if broker is home else "-",
             first_new_s=None if first_new is None else round(first_new - t_back, 2),
             discovery_at_central=len(disc), run_s=round(t_end - t_launch), per_daemon=rows,
             rc=[d["rc"] for d in rows])
    return r


def _bridge_up_since(rec: FleetRecorder, t0: float) -> float | None:
    with rec._cv:
        return next((t for t, topic, payload in rec.other if t >= t0 and topic.endswith(f"/{BRIDGE_ID}/state")
                     and payload == b"1"), None)


def _wait(probe, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    """Poll until probe() is truthy; the time it became so (a float probe gives its own), None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = probe()
        if v:
            return v if isinstance(v, float) else time.time()
        time.sleep(0.1)
    return None


def bridge(faults: tuple[str, ...] = FAULTS, *, daemons: int = 3, before_s: float = 10.0, down_s: float = 3.0,
           after_s: float = 10.0, commit: str | None = None, workdir: Path | None = None, log=print) -> dict:
    if not (RAVDESS / "manifest.csv").is_file():
        raise SystemExit(f"bridge: the RAVDESS corpus is not at {RAVDESS}")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="moodmic-bridge-"))
    tmp.mkdir(parents=True, exist_ok=True)
    code = REPO if commit is None else tmp / "code"
    version = code_version() if commit is None else export_code(commit, code)
    (wav,) = build_wavs(tmp, RAVDESS, 60 + before_s + down_s + after_s + 90, 1)
    results = [run_fault(f, daemons=daemons, before_s=before_s, down_s=down_s, after_s=after_s, workdir=tmp / f,
                         code=code, wav=wav, log=log) for f in faults]
    for r in results:
        r["checks"] = {"every daemon exited 0": all(rc == 0 for rc in r["rc"]),
                       "lost (daemon) = 0": r["lost_daemon"] == 0,
                       "bridge back": r["bridge_back_s"] is not None,
                       "discovery re-sent across the bridge": r["discovery_at_central"] == 3 * daemons}
        if r["fault"] in LOSSLESS:
            r["checks"]["nothing lost end to end"] = r["lost_total"] <= 0
        r["ok"] = all(r["checks"].values())
    out = {"command": "python scripts/bridge.py" + (f" --commit {version}" if commit else ""),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "code": version,
           "faults": results, "ok": all(r["ok"] for r in results)}
    if workdir is None and out["ok"]:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def render(res: dict) -> str:
    lines = [f"Generated by `{res['command']}` on {res['date']}, commit {res['code']}; machine: {res['machine']}.", "",
             "| fault | daemons | produced | acknowledged by home | received at home | received at central | "
             "lost (daemon) | lost (home broker) | lost (bridge + central) | lost end to end | duplicated at central | "
             "bridge back s | daemons back s | first new message at central s | checks |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["faults"]:
        failed = [k for k, ok in r["checks"].items() if not ok]
        checks = f"all {len(r['checks'])} pass" if not failed else "FAILED: " + ", ".join(failed)
        lines.append(
            f"| {r['fault']} | {r['daemons']} | {r['produced']} | {r['acked']} | {r['received_home']} | {r['received']} | "
            f"{r['lost_daemon']} | {r['lost_home']} | {r['lost_bridge']} | {r['lost_total']} | {r['duplicated']} | "
            f"{r['bridge_back_s']} | {r['daemons_back_s']} | "
            f"{r['first_new_s']} | {checks} |")
    lines.append("")
    for r in res["faults"]:
        away = r["fault"] == "central-away"
        lines.append(f"- **{r['fault']}**: {NOTES[r['fault']]}; down {r['down_s']} s"
                     + (f", the home broker's `max_queued_messages {QUEUE_CAP}`" if away else "")
                     + f"; spooled at SIGTERM {r['spooled']}, counted drops {r['dropped']}; the home broker logged "
                     f"`Outgoing messages are being dropped` {r['drop_notices']} times.")
    return "\n".join(lines)


NOTES = {"central-sigkill": "the central broker SIGKILLed and started again",
         "home-sigterm": "the home broker (and its bridge) stopped with SIGTERM and started again",
         "home-sigkill": "the home broker (and its bridge) SIGKILLed and started again",
         "central-away": "the central broker stopped (SIGTERM) for longer than the bridge's queue lasts"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fault", choices=FAULTS, action="append", help="one fault (repeatable; default: all)")
    ap.add_argument("--daemons", type=int, default=3, help="daemons on the home broker (default 3)")
    ap.add_argument("--down", type=float, default=3.0, help="seconds the broker stays down (default 3)")
    ap.add_argument("--commit", help="run the daemons from edge/ as committed at this revision (default: the working tree)")
    ap.add_argument("--workdir", type=Path, help="keep configs and logs here (default: a temp folder)")
    ap.add_argument("--out", type=Path, help="update the bridge section of this file (RELIABILITY.md)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON")
    a = ap.parse_args(argv)
    res = bridge(tuple(a.fault or FAULTS), daemons=a.daemons, down_s=a.down, commit=a.commit, workdir=a.workdir)
    print(render(res))
    for r in res["faults"]:
        for name, ok in r["checks"].items():
            print(f"{'ok  ' if ok else 'FAIL'} {r['fault']}: {name}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    if a.out:
        update_section(a.out, "bridge", render(res) + "\n\nThe bridge (on the home broker):\n\n```\n"
                       + BRIDGE.format(port="CENTRAL_PORT") + "```")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
