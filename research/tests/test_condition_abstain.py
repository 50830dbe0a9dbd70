"""research/condition_abstain.py: the daemon's decisions replayed offline, with its room-aware rules."""

from __future__ import annotations

import json

from conftest import TINY_INT8


def test_offline_decisions_reproduce_the_daemon_and_a_deaf_rule_publishes_nothing(replay_run, tmp_path):
    from condition_abstain import main

    run, noise = replay_run
    out = tmp_path / "abstain"
    # main() itself fails if the offline states at (span 3, P 0, M 0) differ from the daemon's
    assert main([str(run), "--bundles", str(TINY_INT8), "--noise", str(noise), "--part", "test",
                 "--conditions", "clean", "--spans", "3,5", "--thresholds", "0.0", "--modulations", "0,99",
                 "--agree", "0,2", "--min-confidence", "0,0.9",
                 "--out", str(out)]) == 0
    report = json.loads((out / "abstain.json").read_text())
    summary = report["summary"]
    assert set(summary) == {f"C {c}, span {w}, P 0, M {m}, A {a}"
                            for c in (0, 0.9) for w in (3, 5) for m in (0, 99) for a in (0, 2)}
    free = summary["C 0, span 3, P 0, M 0, A 0"]["clean"]
    assert free["coverage"] > 0.5  # nothing abstains and any emotion is taken (the tiny model is never sure)
    for w in (3, 5):  # no window of speech has a 99 dB modulation depth: everything uncertain
        assert summary[f"C 0, span {w}, P 0, M 99, A 0"]["clean"] == {"coverage": 0.0, "wrong": None}
    assert summary["C 0, span 3, P 0, M 0, A 2"]["clean"]["coverage"] < free["coverage"]  # agreement is stricter
    assert summary["C 0.9, span 3, P 0, M 0, A 0"]["clean"]["coverage"] == 0.0  # no emotion is ever 0.9 sure
    p10, p50, p90 = (report["modulation_percentiles"]["clean"][q] for q in ("10", "50", "90"))
    assert 0 < p10 <= p50 <= p90
    assert "| C 0, span 5, P 0, M 99, A 2 | 0.00 / - |" in (out / "abstain.md").read_text()


def test_the_frontier_picks_the_fewest_wrong_per_rule_above_each_coverage_floor():
    from condition_abstain import _frontier, _rule

    assert [_rule(k) for k in ("C 0.4, span 3, P 0.3, M 0, A 0", "C 0.4, span 3, P 0.3, M 9.5, A 0",
                               "C 0.4, span 3, P 0.3, M 0, A 2", "C 0.4, span 3, P 0.3, M 9, A 3",
                               "C 0.4, span 3, P 0.3, M 0, A 0, D 0.1", "C 0.4, span 3, P 0.3, M 0, A 0, D 0")] == [
        "threshold", "modulation", "agreement", "both", "margin", "threshold"]
    summary = {"C 0.4, span 3, P 0.3, M 0, A 0": {"room": {"coverage": 0.3, "wrong": 0.5}},
               "C 0.4, span 3, P 0.4, M 0, A 0": {"room": {"coverage": 0.18, "wrong": 0.3}},
               "C 0.4, span 3, P 0.5, M 0, A 0": {"room": {"coverage": 0.0, "wrong": None}},
               "C 0.4, span 3, P 0.3, M 9, A 0": {"room": {"coverage": 0.22, "wrong": 0.4}}}
    assert _frontier(summary, floors=(0.15, 0.25)) == [
        ("threshold", 0.15, "C 0.4, span 3, P 0.4, M 0, A 0"), ("modulation", 0.15, "C 0.4, span 3, P 0.3, M 9, A 0"),
        ("threshold", 0.25, "C 0.4, span 3, P 0.3, M 0, A 0")]


def test_each_rule_turns_a_published_emotion_into_uncertain():
    from condition_abstain import decide

    from edge.config import Settings

    labels = ("angry", "calm", "sad")
    close = [0.5, 0.45, 0.05]  # a sure top (0.5 >= min_confidence 0.4), but only 0.05 ahead of the next
    windows = [{"end_s": 2.6 + k, "modulation": 12.0, "probs": close} for k in range(4)]
    assert decide(windows, labels, Settings(), 3, 0.3, 0.0) == [(2.6, "angry")]  # today's daemon publishes it
    assert decide(windows, labels, Settings(), 3, 0.3, 0.0, margin=0.1) == [(2.6, "uncertain")]
    assert decide(windows, labels, Settings(), 3, 0.3, 13.0) == [(2.6, "uncertain")]  # modulation below 13 dB
    # agreement over 2 windows: the first window alone is not enough, the second agrees
    assert decide(windows, labels, Settings(), 3, 0.3, 0.0, agree=2) == [(2.6, "uncertain"), (3.6, "angry")]

