"""A mosquitto bridge (scripts/bridge.py), short: 3 `moodmic run` daemons on a home broker bridged at QoS 1
to a central broker with a persistent subscriber; the home broker (and so the bridge) restarted, and the
central broker SIGKILLed, mid-stream: nothing lost inside the daemons, nothing lost end to end, and
Home Assistant's `online` on the central broker brings discovery back across the bridge.

RELIABILITY.md's bridge table is the same code with the home broker SIGKILLed as well:

    .venv/bin/python scripts/bridge.py --out RELIABILITY.md
"""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from bridge import bridge, render

pytestmark = pytest.mark.fleet  # not in the default run: -m fleet


def test_a_bridge_restarted_mid_stream_loses_nothing(ravdess, tmp_path):
    res = bridge(("home-sigterm", "central-sigkill"), daemons=3, before_s=8.0, after_s=6.0, workdir=tmp_path,
                 log=lambda *_: None)
    print("\n" + render(res))
    for r in res["faults"]:
        assert all(rc == 0 for rc in r["rc"]), r
        assert r["lost_daemon"] == 0 and r["lost_total"] <= 0 and r["lost_bridge"] == 0, r
        assert r["received"] >= r["acked"] > 0, r  # every acknowledged message reached the central broker
        assert r["bridge_back_s"] is not None and r["discovery_at_central"] == 9, r
    assert res["ok"], [r["checks"] for r in res["faults"]]
