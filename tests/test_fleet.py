"""The fleet (scripts/fleet.py), small: 10 `moodmic run` daemons on real speech in real time against one
mosquitto that is SIGKILLed and restarted once; every state and event counted by (device, boot_id, seq).

RELIABILITY.md's hundred-daemon table is the same code, larger:

    .venv/bin/python scripts/fleet.py --daemons 100 --minutes 10 --kills 3 --out RELIABILITY.md
"""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from fleet import fleet, render

pytestmark = pytest.mark.fleet  # not in the default run: -m fleet

DAEMONS = 10


def test_ten_daemons_lose_nothing_through_a_broker_sigkill_and_all_come_back(ravdess, tmp_path):
    r = fleet(DAEMONS, 1.0, 1, down_s=3.0, workdir=tmp_path, log=lambda *_: None)
    print("\n" + render([r]))
    rows = r["per_daemon"]
    assert len(rows) == DAEMONS and all(d["rc"] == 0 and d["closed"] for d in rows), rows
    assert [d["device"] for d in rows if d["lost_daemon"] != 0] == [], rows  # nothing lost inside a daemon
    (restart,) = r["restarts"]
    assert restart["not_back"] == 0 and restart["back"]["n"] == DAEMONS, restart  # every one reconnected
    assert restart["back"]["max"] < 60, restart  # within paho's back-off cap (30 s) and some
    assert all(d["produced"] >= 50 and d["received"] >= d["acked"] - d["lost_broker"] for d in rows), rows
    assert r["ok"], r["checks"]
