"""trainer/recipe/collect.py: a finished recipe run into the repository, all of it or nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECT = REPO / "trainer" / "recipe" / "collect.py"
sys.path.insert(0, str(COLLECT.parent))
from collect import BUNDLE_FILES, FOLDS_NOTE, RESULTS  # noqa: E402


def _finished_run(out: Path) -> None:
    for f in BUNDLE_FILES:
        (out / "bundle").mkdir(parents=True, exist_ok=True)
        (out / "bundle" / f).write_text(f"bundle {f}")
    for src, _ in RESULTS:
        p = out / src
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.name == "conditions.json":
            p.write_text(json.dumps({"summary": {"clean": 0.6}, "folds": {"fold-0": {"clean": 0.5}}}))
        else:
            p.write_text(f"result {src}")


def _collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(COLLECT), *args], capture_output=True, text=True, timeout=60)


def test_every_result_lands_where_the_model_card_and_its_test_read_it(tmp_path):
    out, repo = tmp_path / "run", tmp_path / "repo"
    _finished_run(out)
    assert _collect(str(out), "--repo", str(repo), "--dry-run").returncode == 0
    assert not repo.exists()  # a dry run copies nothing
    proc = _collect(str(out), "--repo", str(repo))
    assert proc.returncode == 0, proc.stderr
    default = repo / "edge" / "models" / "default"
    assert (default / "model.tflite").read_text() == "bundle model.tflite"
    results = repo / "trainer" / "recipe" / "results"
    assert (results / "cv_summary.md").read_text() == "result refit-members/cv_summary.md"  # the refit is the CV figure
    assert (results / "members" / "converted_cv.json").read_text() == "result members-converted/converted_cv.json"
    assert (results / "replay" / "hold.md").read_text() == "result replay-hold/replay.md"
    for cond in (results / "conditions" / "conditions.json", results / "conditions" / "converted" / "conditions.json"):
        report = json.loads(cond.read_text())
        assert "folds" not in report and report["summary"] == {"clean": 0.6} and report["note"] == FOLDS_NOTE


def test_a_run_that_is_not_finished_replaces_nothing(tmp_path):
    out, repo = tmp_path / "run", tmp_path / "repo"
    _finished_run(out)
    (out / "replay-hold" / "replay.md").unlink()  # the last step still running
    proc = _collect(str(out), "--repo", str(repo))
    assert proc.returncode == 1 and "replay-hold" in proc.stderr and "collect again" in proc.stderr
    assert not repo.exists()
