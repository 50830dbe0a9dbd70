"""research/replay_grid.py: every (hop, span, threshold) replayed on one rendering per fold and condition."""

from __future__ import annotations

import json

from conftest import TINY_INT8


def test_the_grid_scores_each_setting_per_fold_and_a_sure_threshold_covers_nothing(replay_run, tmp_path):
    from replay_grid import main

    run, noise = replay_run
    out = tmp_path / "grid"
    assert main([str(run), "--bundles", str(TINY_INT8), "--noise", str(noise), "--part", "test",
                 "--conditions", "clean", "--hops", "1.0,0.5", "--spans", "1,3", "--thresholds", "0.0,0.999",
                 "--out", str(out)]) == 0
    report = json.loads((out / "grid.json").read_text())
    assert len(report["summary"]) == 2 * 2 * 2
    sure = [c["clean"] for key, c in report["summary"].items() if key.endswith("P 0.999")]
    assert len(sure) == 4 and all(c["coverage"] == 0.0 and c["wrong"] is None for c in sure)  # never that sure
    assert set(report["folds"]["hop 1 s, span 1, P 0"]["clean"]) == {run.name}  # per fold, as measured
    assert "| hop 0.5 s, span 3, P 0.999 | 0.00 / - |" in (out / "grid.md").read_text()
