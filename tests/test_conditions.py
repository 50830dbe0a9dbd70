"""The room conditions (trainer.rooms, trainer.noisebank) and `moodmic-train conditions` (trainer.conditions).

Rendering needs no TensorFlow and no corpus: speech-like audio, noise FLACs written here in three
pools. Each condition is measured against its definition with code of the test's own (SNR on the
speech's active part, loudest 2-s window level, the microphone's band from a cross-spectrum, the
RIR's RT60). The command runs on a fake run scored by the tiny committed bundle, and end to end on
a tiny trained run (TensorFlow).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.errors import ConfigError
from trainer.noisebank import KINDS, NoiseBank
from trainer.rooms import CONDITIONS, DISTANCE_RANGE_M, FAR_LEVEL_DBFS, RT60_RANGE_S, SNRS_DB, Renderer, RoomBank, reverberate

from conftest import FIXTURES, SR, speechlike
from trainer_synth import fake_run

POOL_NAMES = ("train", "validation", "evaluation")
KEYS = [f"clip-{i}" for i in range(6)]


def speech(seed: int = 0, seconds: float = 3.0) -> np.ndarray:
    """Speech-like audio between silences (which the SNR's active part must leave out)."""
    quiet = np.zeros(int(0.6 * SR), np.float32)
    return np.concatenate([quiet, speechlike(seconds, seed=seed, level=0.05), quiet])


def write_noise(root: Path, kinds=tuple(KINDS), pools=POOL_NAMES, per=2) -> Path:
    """Noise FLACs as corpora/prepare.py lays them out (root/NAME/manifest.csv, its columns, `fan_hum`),
    `per` sources per kind and pool (one shorter than a clip: looped), a duplicate row, and an
    emotional-speech manifest beside them that is no noise."""
    folder = root / "noise"
    rows = []
    for k, kind in enumerate(kinds):
        for p, pool in enumerate(pools):
            for i in range(per):
                rng = np.random.default_rng(100 * k + 10 * p + i)
                seconds = 1.0 if i == 1 else 8.0
                x = np.cumsum(rng.standard_normal(int(seconds * SR))) * 0.002 + 0.05 * rng.standard_normal(int(seconds * SR))
                x = (0.2 * (x - x.mean()) / np.abs(x).max()).astype(np.float32)
                name = f"{kind}/{pool}-{i}.flac"
                (folder / kind).mkdir(parents=True, exist_ok=True)
                sf.write(folder / name, x, SR)
                rows.append([name, "test", "fan_hum" if kind == "fan" else kind, "x", f"{kind}-{pool}-{i}", pool, ""])
    rows.append([rows[0][0], "test", rows[0][2], "x", "elsewhere", "train", rows[0][0]])  # a duplicate: skipped
    with open(folder / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "corpus", "kind", "subkind", "source_recording", "pool", "duplicate_of"], *rows])
    (root / "speech").mkdir()
    (root / "speech" / "manifest.csv").write_text("path,corpus,speaker,emotion\nx.flac,test,s1,angry\n")
    return root


def active_power(x: np.ndarray) -> float:
    """The SNR's speech side, as trainer.rooms defines it: 20-ms frames within 30 dB of the loudest."""
    frames = x[: len(x) // 320 * 320].astype(np.float64).reshape(-1, 320)
    p = (frames ** 2).mean(axis=1)
    return float(p[p >= p.max() / 1000].mean())


def loudest_2s_dbfs(x: np.ndarray) -> float:
    w = 2 * SR
    return 10 * np.log10(max(np.mean(x[s:s + w].astype(np.float64) ** 2) for s in range(0, len(x) - w + 1, 160)))


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory) -> Path:
    return write_noise(tmp_path_factory.mktemp("noise"))


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> RoomBank:
    return RoomBank(0, SR, tmp_path_factory.mktemp("rooms"), count=2)


@pytest.fixture(scope="module")
def renderer(noise_dir, rooms) -> Renderer:
    return Renderer(NoiseBank.from_dirs([noise_dir], SR), rooms, 0, SR)


@pytest.mark.parametrize("kind", KINDS)
def test_noise_conditions_hit_their_snr_on_the_active_speech(renderer, kind):
    x = speech()
    for snr in SNRS_DB:
        y, info = renderer.render(x, CONDITIONS[f"noise-{kind}-{snr}"], "validation", "clip-0")
        noise = y.astype(np.float64) - x
        measured = 10 * np.log10(active_power(x) / np.mean(noise ** 2))
        assert abs(measured - snr) < 0.5, (kind, snr, measured)
        assert info["noise"]["kind"] == kind and info["noise"]["snr_db"] == snr
    # the four SNRs of a kind share one segment, only the gain differs
    a, b = (renderer.render(x, CONDITIONS[f"noise-{kind}-{s}"], "validation", "clip-0")[1]["noise"] for s in (20, 5))
    assert a["offsets_s"] == b["offsets_s"] and a["sources"] == b["sources"] and abs(a["gain_db"] - b["gain_db"] + 15) < 0.02


def test_reverb_rooms_are_in_range_and_keep_level_and_timing(renderer, rooms):
    import pyroomacoustics as pra

    for index in range(rooms.count):
        room, rir = rooms.get("validation", index)
        assert RT60_RANGE_S[0] <= room.rt60_target_s <= RT60_RANGE_S[1]
        measured = pra.experimental.measure_rt60(rir, fs=SR, decay_db=30)
        assert abs(measured - room.rt60_target_s) < 0.05, (measured, room)
        assert DISTANCE_RANGE_M[0] - 0.01 <= room.distance_m <= DISTANCE_RANGE_M[1] + 0.01
        assert abs(math.dist(room.talker_m, room.mic_m) - room.distance_m) < 1e-6
        assert all(0.5 <= p[i] <= room.size_m[i] - 0.5 for p in (room.talker_m, room.mic_m) for i in range(2))
        assert np.argmax(np.abs(rir)) == int(0.0025 * SR)  # direct path first: timing kept
    x = speech(1)
    y, info = renderer.render(x, CONDITIONS["reverb"], "validation", "clip-1")
    assert len(y) == len(x) and abs(loudest_2s_dbfs(y) - loudest_2s_dbfs(x)) < 0.1
    assert np.corrcoef(x, y)[0, 1] < 0.9  # it did reverberate
    assert info["room"]["pool"] == "validation" and 0 <= info["room"]["index"] < rooms.count


def test_far_field_level_and_microphone_band(renderer):
    from scipy.signal import csd, welch

    for i, key in enumerate(KEYS):
        y, info = renderer.render(speech(i), CONDITIONS["far"], "evaluation", key)
        assert FAR_LEVEL_DBFS[0] - 0.5 <= loudest_2s_dbfs(y) <= FAR_LEVEL_DBFS[1] + 0.5, info
        assert abs(loudest_2s_dbfs(y) - info["far"]["level_dbfs"]) < 0.5
        assert np.allclose(y * 32767, np.round(y * 32767), atol=1e-3)  # a 16-bit capture
    white = np.random.default_rng(0).standard_normal(8 * SR).astype(np.float32) * 0.1
    y, info = renderer.render(white, CONDITIONS["far"], "evaluation", "white")
    f, pxy = csd(white, y, fs=SR, nperseg=4096)
    gain = np.abs(pxy) / welch(white, fs=SR, nperseg=4096)[1]
    db = lambda hz: 20 * np.log10(np.interp(hz, f, gain) / np.interp(1000.0, f, gain))  # noqa: E731
    hp, lp = info["far"]["highpass_hz"], info["far"]["lowpass_hz"]
    assert 200 <= hp <= 300 and 4000 <= lp <= 6000
    assert abs(db(hp) + 3) < 1.0 and abs(db(lp) + 3) < 1.0  # Butterworth corners at the drawn frequencies
    assert db(hp / 2) < -10 and db(1.5 * lp) < -12 and db(7800) < -20


def test_room_is_reverb_plus_voices_and_noise(renderer, rooms):
    x = speech(2)
    y, info = renderer.render(x, CONDITIONS["room"], "validation", "clip-2")
    wet = reverberate(x, rooms.get("validation", info["room"]["index"])[1], SR)
    voices, other = info["noise"]
    assert voices["kind"] == "voices" and voices["snr_db"] == 10 and other["kind"] != "voices" and other["snr_db"] == 20
    total = 10 * np.log10(active_power(wet) / np.mean((y - wet) ** 2))
    assert abs(total - -10 * np.log10(0.1 + 0.01)) < 0.5, total


def test_same_seed_same_rendering(noise_dir, rooms):
    def make(seed):
        return Renderer(NoiseBank.from_dirs([noise_dir], SR), RoomBank(seed, SR, rooms.cache, count=2), seed, SR)

    a, b, other = make(0), make(0), make(1)
    x = speech(3)
    for name in ("reverb", "noise-voices-10", "noise-fan-5", "far", "room"):
        ya, ia = a.render(x, CONDITIONS[name], "validation", "clip-3")
        yb, ib = b.render(x, CONDITIONS[name], "validation", "clip-3")
        assert np.array_equal(ya, yb) and ia == ib, name
        if name != "reverb":  # two rooms per pool here: another clip or seed may draw the same one
            assert not np.array_equal(ya, a.render(x, CONDITIONS[name], "validation", "clip-4")[0]), name
            assert not np.array_equal(ya, other.render(x, CONDITIONS[name], "validation", "clip-3")[0]), name
    assert np.array_equal(a.render(x, CONDITIONS["clean"], "validation", "k")[0], x)


def test_pools_are_disjoint(renderer, rooms, noise_dir, tmp_path):
    sources = {pool: {f"{k}-{pool}-{i}" for k in KINDS for i in range(2)} for pool in POOL_NAMES}
    x = speech(4)
    for name in [n for n in CONDITIONS if n.startswith("noise-") and n.endswith("-10")] + ["room"]:
        for key in KEYS:
            for pool in ("validation", "evaluation"):
                info = renderer.render(x, CONDITIONS[name], pool, key)[1]
                used = info["noise"] if isinstance(info["noise"], list) else [info["noise"]]
                assert all(set(u["sources"]) <= sources[pool] and u["pool"] == pool for u in used), (name, pool, used)
                assert all(len(set(u["sources"])) == len(u["sources"]) for u in used)
                if "room" in info:
                    assert info["room"]["pool"] == pool
    validation = {(r.size_m, r.rt60_target_s) for r in rooms.all("validation")}
    assert not validation & {(r.size_m, r.rt60_target_s) for r in rooms.all("evaluation")}
    assert rooms.get("train", 0)[0].size_m not in {s for s, _ in validation}
    # a source in two pools is refused
    leaky = write_noise(tmp_path / "leaky", kinds=("fan",), per=1)
    text = (leaky / "noise" / "manifest.csv").read_text().replace("fan-evaluation-0", "fan-validation-0")
    (leaky / "noise" / "manifest.csv").write_text(text)
    with pytest.raises(ConfigError, match="more than one pool"):
        NoiseBank.from_dirs([leaky], SR)


def test_a_missing_kind_is_reported_not_substituted(tmp_path, rooms):
    partial = write_noise(tmp_path / "partial", kinds=("fan", "voices"), pools=("train", "validation"))
    r = Renderer(NoiseBank.from_dirs([partial], SR), rooms, 0, SR)
    for kind in ("household", "music"):
        assert f"no validation-pool recordings of {kind}" in r.missing(CONDITIONS[f"noise-{kind}-10"], "validation")
        with pytest.raises(ValueError, match=kind):
            r.render(speech(), CONDITIONS[f"noise-{kind}-10"], "validation", "k")
    assert r.missing(CONDITIONS["noise-fan-10"], "validation") is None
    assert "no evaluation-pool recordings of fan" in r.missing(CONDITIONS["noise-fan-10"], "evaluation")
    assert r.missing(CONDITIONS["room"], "validation") is None  # voices + fan
    info = r.render(speech(), CONDITIONS["room"], "validation", "k")[1]
    assert [n["kind"] for n in info["noise"]] == ["voices", "fan"]
    assert "voices" in r.missing(CONDITIONS["room"], "evaluation")
    assert r.missing(CONDITIONS["clean"], "evaluation") is None and r.missing(CONDITIONS["far"], "evaluation") is None


def test_noise_folders_as_corpora_writes_them(noise_dir):
    bank = NoiseBank.from_dirs([noise_dir], SR)
    assert len(bank.recordings) == len(KINDS) * len(POOL_NAMES) * 2  # the duplicate and the speech manifest left out
    assert {r.kind for r in bank.recordings} == set(KINDS)
    talkers = [len(bank.segment("voices", "evaluation", SR, np.random.default_rng(i))[1]["sources"]) for i in range(20)]
    assert set(talkers) == {1, 2}  # 1 to 3 talkers, as many as the pool has


def test_synthetic_noise_is_seeded_pooled_and_labelled():
    bank = NoiseBank.synthetic_bank(0, SR)
    assert bank.synthetic and bank.describe()["synthetic"]
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    for kind in KINDS:
        a, ia = bank.segment(kind, "validation", SR, rng())
        b, ib = NoiseBank.synthetic_bank(0, SR).segment(kind, "validation", SR, rng())
        assert np.array_equal(a, b) and ia == ib
        assert all(s.startswith(f"synthetic:{kind}:validation:") for s in ia["sources"])
        assert not np.array_equal(a, bank.segment(kind, "evaluation", SR, rng())[0])


# ---- the command ----

@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from trainer_synth import make_corpus

    return make_corpus(tmp_path_factory.mktemp("synth"), speakers=4, reps=1)


@pytest.mark.tensorflow
def test_command_on_a_bundle_reports_missing_kinds_and_resumes(synth, tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorflow", reason="moodmic-train needs the train extra (TensorFlow)")
    from trainer.cli import main

    monkeypatch.setattr("trainer.rooms.ROOMS_PER_POOL", 2)
    run = fake_run(tmp_path, synth)
    noise = write_noise(tmp_path / "noise", kinds=("fan", "voices"))
    out = tmp_path / "out"
    args = ["conditions", str(run), "--noise", str(noise), "--out", str(out), "--bundles", str(FIXTURES / "tiny_float"),
            "--conditions", "clean,reverb,noise-*-5,far,room", "--data", str(synth), "--clips-per-actor", "6"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "not measured: noise-household-5 on the validation pool" in err and "noise-music-5" in err
    d = json.loads((out / "conditions.json").read_text())
    measured = ["clean", "reverb", "noise-voices-5", "noise-fan-5", "far", "room"]
    assert list(d["summary"]) == measured and set(d["not_measured"]) == {"noise-household-5", "noise-music-5"}
    assert set(d["not_measured"]["noise-household-5"]) == {"validation", "evaluation"}
    fold = d["folds"]["run"]
    assert fold["validation_actors"] == ["03"] and fold["test_actors"] == ["04"]
    for name in measured:
        for part, pool in (("validation", "validation"), ("test", "evaluation")):
            m = fold["conditions"][name][part]
            assert m["pool"] == pool and m["all"]["clips"] == 6 and {"speech", "song"} <= set(m)
            assert abs(sum(m["all"]["called"].values()) - 1) < 1e-3 and 0 < m["all"]["mean_confidence"] <= 1
            rows = json.loads((out / "cache" / "run" / part / f"{name}.json").read_text())["clips"]
            used = [n for r in rows for n in ([r["render"]["noise"]] if isinstance(r["render"].get("noise"), dict)
                                              else r["render"].get("noise", []))]
            assert all(u["pool"] == pool for u in used) and all(r["render"].get("room", {"pool": pool})["pool"] == pool
                                                                 for r in rows)
    md = (out / "conditions.md").read_text()
    assert "Not measured" in md and "noise-household-5 on the evaluation pool" in md and "SYNTHETIC" not in md
    assert (out / "conditions.png").stat().st_size > 10_000
    before = d["summary"]
    # resumed: nothing rescored, same figures; a changed cache entry is recomputed alone
    assert main(args) == 0
    d = json.loads((out / "conditions.json").read_text())
    assert d["timing"]["scored_now"] == 0 and d["summary"] == before
    stale = out / "cache" / "run" / "test" / "far.json"
    stale.write_text(stale.read_text().replace('"key": "', '"key": "x'))
    assert main(args) == 0
    d = json.loads((out / "conditions.json").read_text())
    assert d["timing"]["scored_now"] == 1 and d["summary"] == before
    assert main(["conditions", str(run), "--noise", str(noise), "--synthetic-noise"]) == 2
    assert main(["conditions", str(run), "--conditions", "noise-tv-*"]) == 2


@pytest.mark.tensorflow
def test_command_end_to_end_on_a_trained_run(tmp_path, monkeypatch):
    """A tiny model that learned the synthetic emotions loses them in heavy noise; the figures say so."""
    pytest.importorskip("tensorflow", reason="the trainer needs the train extra (TensorFlow)")
    from trainer.cli import main

    from trainer_synth import make_corpus

    synth = make_corpus(tmp_path / "synth")  # 8 speakers: fold 0 of 4 tests two of them
    run = tmp_path / "run"
    assert main(["train", "--data", str(synth), "--out", str(run), "--arch", "tiny", "--folds", "4", "--epochs", "12",
                 "--aug-copies", "1", "--cache", str(tmp_path / "cache"), "--seed", "0", "--no-band-mean"]) == 0
    out = tmp_path / "conditions"
    assert main(["conditions", str(run), "--synthetic-noise", "--out", str(out),
                 "--conditions", "clean,noise-fan-5,noise-voices-5,far"]) == 0
    d = json.loads((out / "conditions.json").read_text())
    ua = {n: d["summary"][n]["test"]["all"]["unweighted_accuracy"]["mean"] for n in d["summary"]}
    assert ua["clean"] >= 0.6, ua
    assert ua["clean"] > max(ua["noise-fan-5"], ua["noise-voices-5"]) + 0.1, ua
    assert d["folds"]["run"]["conditions"]["clean"]["test"]["all"]["clips"] == 56
    md = (out / "conditions.md").read_text()
    assert "SYNTHETIC NOISE" in md and "noise-fan-5 (synthetic noise)" in md and "| clean |" in md
    assert (out / "conditions.png").is_file() and d["noise"]["synthetic"]
