"""research/enhance_cost.py: the front end's CPU time per second of real speech."""

from __future__ import annotations

import json


def test_it_times_every_setting_on_real_speech(ravdess, tmp_path):
    from enhance_cost import SETTINGS, main

    assert main(["--data", str(ravdess), "--seconds", "3", "--repeats", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "enhance_cost.json").read_text())
    assert report["seconds"] == 3.0
    assert [(r["noise_suppression"], r["auto_gain_dbfs"]) for r in report["rows"]] == list(SETTINGS)
    assert all(0 < r["cpu_ms_per_audio_s"] < 1000 for r in report["rows"])  # faster than real time
    assert "| 2 | 5 |" in (tmp_path / "enhance_cost.md").read_text()
