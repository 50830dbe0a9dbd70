"""research/condition_abstain.py: the daemon's decisions replayed offline, with the modulation rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
TINY_INT8 = REPO / "tests" / "fixtures" / "tiny_int8"


def test_offline_decisions_reproduce_the_daemon_and_a_deaf_rule_publishes_nothing(tmp_path):
    from condition_abstain import main

    from trainer.replay import RUN_CLIPS

    from trainer_synth import fake_run, make_corpus

    run = fake_run(tmp_path, make_corpus(tmp_path / "synth", speakers=4, reps=RUN_CLIPS))
    noise = tmp_path / "noise"  # clean replays read none, but the bank wants a prepared folder
    noise.mkdir()
    sf.write(noise / "fan.flac", 0.01 * np.random.default_rng(0).standard_normal(16000), 16000)
    (noise / "manifest.csv").write_text("path,kind,pool,source\nfan.flac,fan_hum,validation,fan\n")
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


def test_published_time_by_label_adds_up_to_coverage():
    from condition_abstain import _by_label

    from trainer.replay import score_states

    labels = ("angry", "calm")
    truth = [(1.0, 3.0, "angry"), (4.0, 6.0, "calm")]
    states = [(0.0, "angry"), (2.0, "uncertain"), (3.5, "calm"), (5.0, "angry")]
    by = _by_label(states, truth, labels)
    assert by == {"angry": (2.0, 1.0), "calm": (1.0, 0.0)}  # angry: 1-2 s right, 5-6 s wrong; calm: 4-5 s right
    r = score_states(states, truth, labels)
    assert r["coverage"] == sum(v[0] for v in by.values()) / 4.0 and r["wrong"] == round(1.0 / 3.0, 4)
