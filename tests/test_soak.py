"""The soak (scripts/soak.py), short: 3 minutes of real speech through `moodmic run --fast`, with and
without MQTT; RSS and threads from /proc, every window and state message accounted.

The hour that RELIABILITY.md reports is the same code, longer:

    .venv/bin/python scripts/soak.py --minutes 60 [--mqtt on] [--realtime] --out RELIABILITY.md
    MOODMIC_SOAK_MINUTES=60 .venv/bin/python -m pytest tests/test_soak.py -m soak   # the same checks as a test
"""

from __future__ import annotations

import os
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from soak import soak

pytestmark = pytest.mark.soak  # not in the default run: -m soak

MINUTES = float(os.environ.get("MOODMIC_SOAK_MINUTES", "3"))


@pytest.mark.timeout(max(600, MINUTES * 60))  # a long soak is not a hang (audio runs faster than real time)
@pytest.mark.parametrize("mqtt", ["off", "on"])
def test_soak_fast(mqtt, ravdess, tmp_path):
    r = soak(MINUTES, mqtt=mqtt, workdir=tmp_path, log=lambda *_: None)
    print(f"\n{r['run']}: {r['audio_min']} min in {r['wall_s']} s, {r['consumed']} windows, RSS "
          f"{r['rss_start_mb']} -> {r['rss_end_mb']} MB (max +{r['rss_growth_mb']}), threads "
          f"{r['threads_start']} -> {r['threads_max']}")
    assert r["ok"], {k: v for k, v in r.items() if k != "machine"}
    assert r["consumed"] >= MINUTES * 60 - 3  # one window a second
    if mqtt == "on":
        assert r["received"] == r["acked"] == r["states"] + r["events"] and r["dropped"] == 0
