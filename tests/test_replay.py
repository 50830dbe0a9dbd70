"""Daemon replays (trainer.replay): runs of one emotion, time-weighted coverage and wrong share."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from edge.config import GateSettings, Settings, SmoothingSettings
from trainer.replay import RUN_CLIPS, build_replay, published_time, replay_fold, score_states

from conftest import SR, TINY_INT8, speechlike


@dataclass(frozen=True)
class FakeClip:  # what build_replay reads of a trainer Clip
    name: str
    speaker: str
    label: str


def test_coverage_and_wrong_are_time_weighted_and_only_emotions_count():
    truth = [(0.0, 10.0, "a"), (10.0, 20.0, "b")]
    states = [(2.0, "a"), (12.0, "silence"), (15.0, "b")]
    r = score_states(states, truth, ("a", "b"))
    assert r["coverage"] == pytest.approx(15 / 20, abs=1e-4)  # "a" from 2 to 12 s, "b" from 15 to 20 s
    assert r["wrong"] == pytest.approx(2 / 15, abs=1e-4)  # "a" while "b" was spoken, 10-12 s
    assert score_states([(1.0, "uncertain")], truth, ("a", "b")) == {"speech_s": 20.0, "coverage": 0.0, "wrong": None}


def test_only_speech_time_counts_not_the_silence_around_each_sentence():
    truth = [(1.0, 3.0, "a"), (5.0, 7.0, "a"), (9.0, 11.0, "b")]  # clips of 4 s, speech in their middle 2 s
    r = score_states([(0.0, "a"), (8.5, "silence"), (10.0, "b")], truth, ("a", "b"))
    assert r["speech_s"] == 6.0
    assert r["coverage"] == pytest.approx(5 / 6, abs=1e-4)  # all of both "a" sentences, half of "b"'s
    assert r["wrong"] == 0.0  # "a" held over the silence before "b" was spoken: not wrong


def test_speech_span_finds_the_sentence_inside_its_silence():
    from trainer.rooms import speech_span

    x = np.zeros(4 * SR, np.float32)
    x[SR : 3 * SR] = speechlike(2.0, seed=1)[: 2 * SR]
    x[: SR] = 1e-5 * np.random.default_rng(0).standard_normal(SR)  # a studio's floor, far below the voice
    s0, s1 = speech_span(x, SR)
    assert 0.9 <= s0 <= 1.1 and 2.9 <= s1 <= 3.1
    assert speech_span(np.zeros(SR, np.float32), SR) == (0.0, 1.0)  # nothing voiced: all of it, no crash


def test_runs_are_one_actor_and_one_emotion_and_their_order_is_seeded():
    clips = [FakeClip(f"{actor}-{label}-{i}", actor, label) for actor in ("01", "02") for label in ("a", "b")
             for i in range(RUN_CLIPS + 2)]  # two clips over a run each: left out
    audio, truth = build_replay(clips, lambda c: (np.full(SR, 0.1, np.float32), (0.25, 0.75)), seed=0, rate=SR)
    assert len(truth) == 4 * RUN_CLIPS and len(audio) == 4 * RUN_CLIPS * SR
    assert [t[:2] for t in truth[:2]] == [(0.25, 0.75), (1.25, 1.75)]  # each clip's speech, at its place
    runs = [truth[i : i + RUN_CLIPS] for i in range(0, len(truth), RUN_CLIPS)]
    assert all(len({t[2] for t in run}) == 1 for run in runs)
    assert build_replay(clips, lambda c: (np.zeros(SR, np.float32), (0.25, 0.75)), seed=0, rate=SR)[1] == truth


def test_a_replay_through_the_daemon_maps_states_to_stream_time():
    audio = np.concatenate([speechlike(8.0, seed=s) for s in range(3)]).astype(np.float32)
    truth = [(0.0, 8.0, "neutral"), (8.0, 16.0, "happy"), (16.0, 24.0, "neutral")]
    # synthetic "speech" is no voice to the gate, and the tiny model is never sure
    settings = Settings(gate=GateSettings(enabled=False), smoothing=SmoothingSettings(min_confidence=0.0))
    r = replay_fold(TINY_INT8, audio, truth, settings)
    assert r["states"] >= 1 and r["speech_s"] == 24.0
    assert 0.0 < r["coverage"] <= 1.0 - 2.5 / 24  # nothing is published before the first full window
    assert r["wrong"] is not None and 0.0 <= r["wrong"] <= 1.0


def test_the_command_replays_each_folds_test_speech_and_writes_its_report(tmp_path):
    """End to end on a run of a synthetic corpus (actor 04 tests), scored by the tiny committed bundle."""
    from test_conditions import write_noise

    from trainer.cli import main

    from trainer_synth import fake_run, make_corpus

    run = fake_run(tmp_path, make_corpus(tmp_path / "synth", speakers=4, reps=RUN_CLIPS))
    noise = write_noise(tmp_path / "noise", kinds=("fan",))
    out = tmp_path / "replay"
    assert main(["replay", str(run), "--bundles", str(TINY_INT8), "--noise", str(noise), "--conditions",
                 "clean,noise-fan-10,noise-music-10", "--out", str(out)]) == 0
    report = json.loads((out / "replay.json").read_text())
    assert set(report["summary"]) == {"clean", "noise-fan-10"}  # no music recordings: not measured, not faked
    fold = report["folds"]["clean"][run.name]
    speech_clips = sum(1 for line in (run / "manifest.csv").read_text().splitlines()
                       if ",04," in line and ",speech," in line and ",test," in line)
    assert fold["speech_s"] > 0 and speech_clips >= RUN_CLIPS and 0.0 <= fold["coverage"] <= 1.0
    assert "| clean |" in (out / "replay.md").read_text()
    # the tiny bundle abstaining below 0.999 is uncertain throughout; --hold never says it
    unsure = tmp_path / "unsure"
    shutil.copytree(TINY_INT8, unsure)
    meta = json.loads((unsure / "model.json").read_text())
    meta["output"]["abstain_below"] = 0.999
    (unsure / "model.json").write_text(json.dumps(meta))
    cfg = ["replay", str(run), "--bundles", str(unsure), "--noise", str(noise), "--conditions", "clean"]
    assert main([*cfg, "--out", str(tmp_path / "abstaining")]) == 0
    assert main([*cfg, "--out", str(tmp_path / "holding"), "--hold"]) == 0
    abstaining, holding = (json.loads((tmp_path / d / "replay.json").read_text()) for d in ("abstaining", "holding"))
    # the tiny model never reaches min_confidence: holding publishes nothing, abstaining says "uncertain"
    assert abstaining["folds"]["clean"][run.name]["called"] == {"uncertain": 1.0}
    assert "uncertain" not in holding["folds"]["clean"][run.name]["called"] and "uncertain false" in holding["settings"]
    # a threshold tried on the validation actors (actor 03, the validation pool) without converting again
    assert main(["replay", str(run), "--bundles", str(TINY_INT8), "--noise", str(noise), "--conditions", "clean",
                 "--part", "validation", "--abstain-below", "0.999", "--span", "5", "--out", str(tmp_path / "sweep")]) == 0
    sweep = json.loads((tmp_path / "sweep" / "replay.json").read_text())
    assert sweep["part"] == "validation" and sweep["pool"] == "validation" and sweep["abstain_below"] == 0.999
    assert sweep["smoothing_windows"] == 5 and "smoothing.windows 5" in sweep["settings"]  # what abstain groups by
    assert abstaining["smoothing_windows"] is None  # the bundle's span
    assert sweep["folds"]["clean"][run.name]["called"] == {"uncertain": 1.0}


def test_published_time_per_emotion_adds_up_to_the_coverage():
    labels = ("angry", "calm")
    truth = [(1.0, 3.0, "angry"), (4.0, 6.0, "calm")]
    states = [(0.0, "angry"), (2.0, "uncertain"), (3.5, "calm"), (5.0, "angry")]
    by = published_time(states, truth, labels)
    assert by == {"angry": (2.0, 1.0), "calm": (1.0, 0.0)}  # angry: 1-2 s right, 5-6 s wrong; calm: 4-5 s right
    r = score_states(states, truth, labels)
    assert r["coverage"] == sum(v[0] for v in by.values()) / 4.0 and r["wrong"] == round(1.0 / 3.0, 4)
