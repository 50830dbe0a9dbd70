"""research/correctness_head.py: the daemon's decisions over recorded windows, with a head's veto."""

from __future__ import annotations

import json
from dataclasses import replace

from conftest import TINY_INT8


def test_the_study_runs_end_to_end_and_its_walk_is_the_daemons(replay_run, tmp_path):
    from condition_abstain import decide
    from correctness_head import main, recorded, walk

    from edge.config import Settings

    run, noise = replay_run
    out = tmp_path / "head"
    assert main([str(run), "--bundles", str(TINY_INT8), "--noise", str(noise), "--conditions", "clean",
                 "--thresholds", "0,0.3", "--heads", "0,1.01", "--min-confidence", "0", "--out", str(out)]) == 0
    report = json.loads((out / "head.json").read_text())
    for part in ("validation", "test"):
        rules = report["rules"][part]
        assert rules["head 0"]["clean"] == rules["P 0"]["clean"]  # a head that always agrees changes nothing
        assert rules["head 0"]["clean"]["coverage"] > 0.5  # C 0: the tiny model, never sure, publishes
        assert rules["head 1.01"]["clean"] == {"coverage": 0.0, "wrong": None}  # one never sure: all uncertain
    assert "| head 1.01 | 0.00 / - |" in (out / "head.md").read_text()
    # the windows are cached, and the walk without a head is condition_abstain's decide (checked there against
    # the daemon's own states)
    replays = recorded(out / "windows", run, TINY_INT8, [str(noise)], out, "test", ["clean"], Settings(), 0)
    assert replays and len(list((out / "windows").glob("*.json"))) == 2 * len(replays)
    free = replace(Settings(), smoothing=replace(Settings().smoothing, min_confidence=0.0))
    for windows, _, labels in replays.values():
        for settings, span, p in ((free, 3, 0.0), (free, 5, 0.3), (Settings(), 3, 0.0)):
            states = walk(windows, labels, settings, span, p)
            assert states == decide(windows, labels, settings, span, p, 0.0)


def test_the_head_sees_the_top_label_with_the_rooms_depth_and_rights_are_by_run():
    import numpy as np
    from correctness_head import features, run_label

    f = features(np.array([0.2, 0.7, 0.1]), np.array([0.1, 0.8, 0.1]), 15.0)
    assert np.allclose(f[:5], [0.7, 0.5, f[2], 0.8, 0.5]) and f[2] > 0
    assert list(f[5:8]) == [0, 1, 0] and np.allclose(f[8:], [0, 0.5, 0])
    truth = [[1.0, 3.0, "sad"], [4.0, 6.0, "sad"], [20.0, 22.0, "angry"]]
    assert [run_label(truth, t) for t in (0.5, 2.0, 3.5, 19.9, 21.0)] == [None, "sad", "sad", "sad", "angry"]
