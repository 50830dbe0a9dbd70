"""The abstention threshold (trainer.abstain): chosen on validation actors by its rule, test only reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError, UsageError
from trainer.abstain import ABSTAIN_FILE, choose, coverage, read_abstain

LABELS = ["a", "b", "c"]


def clips(confidences: list[float], right: list[bool], channel: str = "speech") -> list[dict]:
    return [{"clip": f"{i}.flac", "channel": channel, "label": "a", "predicted": "a" if ok else "b", "confidence": c}
            for i, (c, ok) in enumerate(zip(confidences, right))]


def write(root: Path, fold: str, part: str, condition: str, rows: list[dict]) -> None:
    path = root / "cache" / fold / part / f"{condition}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"condition": condition, "part": part, "fold": fold, "labels": LABELS, "clips": rows}))


def test_coverage_and_wrong_share():
    rows = clips([0.9, 0.8, 0.5, 0.3], [True, False, True, False])
    assert coverage(rows, 0.0) == (1.0, 0.5)
    assert coverage(rows, 0.6) == (0.5, 0.5)
    assert coverage(rows, 0.85) == (0.25, 0.0)
    assert coverage(rows, 0.95) == (0.0, None)


def test_the_smallest_threshold_meeting_the_rule_on_validation_and_test_only_reported(tmp_path):
    # validation room: wrong answers are the unsure ones; from 0.56 (just above 0.55) 1 wrong in 3 is covered
    room = clips([0.9, 0.7, 0.65, 0.55, 0.5, 0.4], [True, True, False, False, False, False])
    write(tmp_path, "fold-0", "validation", "room", room)
    write(tmp_path, "fold-0", "validation", "clean", clips([0.9, 0.8, 0.7, 0.3], [True, True, True, False]))
    write(tmp_path, "fold-0", "validation", "room", room + clips([0.99], [False], channel="song"))  # song ignored
    write(tmp_path, "fold-0", "test", "room", clips([0.95, 0.62], [False, False]))
    result = choose(tmp_path, "room", 1 / 3)
    assert result["abstain_below"] == pytest.approx(0.56)
    assert result["validation"]["room"] == {"clips": 6, "coverage": 0.5, "wrong": 0.3333}
    assert result["validation"]["clean"]["coverage"] == 0.75
    assert result["test (reported only)"]["room"] == {"clips": 2, "coverage": 1.0, "wrong": 1.0}
    assert json.loads((tmp_path / ABSTAIN_FILE).read_text())["abstain_below"] == result["abstain_below"]
    # the test actors never move the threshold
    write(tmp_path, "fold-0", "test", "room", clips(list(np.linspace(0.1, 0.99, 20)), [True] * 20))
    assert choose(tmp_path, "room", 1 / 3)["abstain_below"] == result["abstain_below"]
    assert read_abstain(tmp_path / ABSTAIN_FILE)["abstain_below"] == pytest.approx(0.56)


def test_no_threshold_when_the_rule_cannot_be_met_and_clear_errors(tmp_path):
    write(tmp_path, "fold-0", "validation", "room", clips([0.9, 0.8], [False, False]))
    assert choose(tmp_path)["abstain_below"] is None
    with pytest.raises(ConfigError, match="--abstain"):
        read_abstain(tmp_path / ABSTAIN_FILE)  # nothing to put in a bundle
    with pytest.raises(UsageError, match="no validation results for condition 'reverb'"):
        choose(tmp_path, "reverb")


def replay(root: Path, p: float, room_wrong: float | None, part: str = "validation", span: int | None = None,
           room_coverage: float | None = None) -> None:
    d = root / (f"val-{p}" if span is None else f"span-{span}-{p}")
    d.mkdir(parents=True)
    summary = {"clean": {"coverage": [1 - p, 0.05], "wrong": [0.3, 0.1], "folds": 5},
               "room": {"coverage": [0.5 - p if room_coverage is None else room_coverage, 0.05],
                        "wrong": None if room_wrong is None else [room_wrong, 0.05], "folds": 5}}
    (d / "replay.json").write_text(json.dumps({"part": part, "abstain_below": p, "summary": summary,
                                               **({"smoothing_windows": span} if span else {})}))


def test_a_sweep_over_spans_takes_each_spans_smallest_threshold_then_the_span_covering_most(tmp_path):
    from trainer.abstain import choose_any

    # span 3 first meets the rule at 0.4 (room covered 0.10); span 5 at 0.3 (covered 0.22): span 5 wins
    for p, w, cov in ((0.3, 0.52, 0.23), (0.4, 0.33, 0.10), (0.5, 0.25, 0.05)):
        replay(tmp_path, p, w, span=3, room_coverage=cov)
    for p, w, cov in ((0.25, 0.48, 0.27), (0.3, 0.30, 0.22), (0.4, 0.20, 0.14)):
        replay(tmp_path, p, w, span=5, room_coverage=cov)
    result = choose_any(tmp_path)
    assert (result["abstain_below"], result["smoothing_windows"]) == (0.3, 5)
    assert set(result["sweep"]) >= {"span 3, P 0.4", "span 5, P 0.25"}
    assert read_abstain(tmp_path / ABSTAIN_FILE)["smoothing_windows"] == 5  # what moodmic-convert --abstain reads
    strict = choose_any(tmp_path, max_wrong=0.22)  # span 3 never gets there; span 5 at 0.4
    assert (strict["abstain_below"], strict["smoothing_windows"]) == (0.4, 5)
    assert choose_any(tmp_path, max_wrong=0.1)["smoothing_windows"] is None  # nothing to put in a bundle


def test_an_abstain_file_with_a_span_out_of_range_is_refused(tmp_path):
    path = tmp_path / ABSTAIN_FILE
    for span in (-1, 101, 2.5, True):
        path.write_text(json.dumps({"abstain_below": 0.3, "smoothing_windows": span}))
        with pytest.raises(ConfigError, match="smoothing_windows"):
            read_abstain(path)


def test_the_threshold_from_daemon_replays_of_validation_actors(tmp_path):
    from trainer.abstain import choose_any

    for p, w in ((0.25, 0.45), (0.3, 0.36), (0.35, 0.32), (0.4, 0.30), (0.5, None)):
        replay(tmp_path, p, w)
    result = choose_any(tmp_path)
    assert result["abstain_below"] == 0.35  # the smallest P at most 1/3 wrong; 0.4 is also, 0.3 is not
    assert "smoothing_windows" not in result  # replays without --span: the bundle keeps the daemon's span
    assert json.loads((tmp_path / ABSTAIN_FILE).read_text())["abstain_below"] == 0.35
    assert read_abstain(tmp_path / ABSTAIN_FILE)["abstain_below"] == 0.35  # what moodmic-convert --abstain reads
    assert choose_any(tmp_path, max_wrong=0.2)["abstain_below"] is None
    replay(tmp_path / "mixed", 0.3, 0.1, part="test")
    with pytest.raises(UsageError, match="validation actors only"):
        choose_any(tmp_path / "mixed")
