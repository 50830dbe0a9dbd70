"""corpora.prepare on synthetic audio: conversion, manifest columns, pools. No network, no real corpora."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpora import prepare as P


def tone(sr: int, seconds: float, freq: float, channels: int = 2, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def test_labels_match_the_trainer():
    corpus = pytest.importorskip("trainer.corpus")
    assert P.MOODMIC_LABELS == tuple(corpus.LABELS)


def test_stereo_44k_wav_becomes_16k_mono_flac(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, tone(44100, 1.5, 440.0), 44100, subtype="PCM_16")
    audio, sr = P.decode(src.read_bytes(), "in.wav")
    assert sr == 44100 and audio.shape == (66150, 2)
    x = P.to_mono_16k(audio, sr)
    out = tmp_path / "out.flac"
    assert P.write_flac(out, x) == 0
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
    assert info.frames == 24000
    y, _ = sf.read(out)
    # channel average of (x, x/2) = 0.75 x: amplitude 0.225, frequency kept
    assert abs(np.max(np.abs(y[1000:-1000])) - 0.225) < 0.01
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 440.0) < 2.0


def test_pcm16_counts_clipping():
    pcm, clipped = P.to_pcm16(np.array([0.0, 0.5, 1.2, -1.5, -1.0]))
    assert clipped == 2
    assert pcm.tolist() == [0, 16384, 32767, -32768, -32768]


def test_lfs_pointer_and_reserved_data_are_refused():
    assert P.is_lfs_pointer(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    assert not P.is_lfs_pointer(b"RIFF\x00\x00\x00\x00WAVE")
    for bad in ("data/TESS/OAF_back_angry.wav", "emodb/wav/03a01Fa.wav", "x/03a01Fa.wav",
                "Actor_22/03-01-05-01-01-01-22.wav", "speech/03-01-05-01-01-01-23.flac"):
        with pytest.raises(P.PrepareError):
            P.check_reserved(["README.md", bad])
    P.check_reserved(["Angry/SM1_F10_A010.wav", "recordings/0_george_0.wav", "Actor_07/03-01-05-01-01-01-07.wav"])


def pools_of(groups):
    return P.assign_pools("src", groups)


def test_pools_are_deterministic_balanced_and_cover_every_recording():
    groups = {"household": {f"dish_{i}": "dishwasher" for i in range(4)} | {f"vac_{i}": "vacuum" for i in range(3)},
              "music": [f"piece_{i}" for i in range(10)],
              "fan_hum": ["fan_a", "fan_b"]}
    a = pools_of(groups)
    assert a == pools_of(groups)                               # same input, same pools
    assert set(a) == {g for v in groups.values() for g in v}   # every recording has exactly one pool
    assert set(a.values()) <= set(P.POOLS)
    music = [a[f"piece_{i}"] for i in range(10)]
    assert (music.count("train"), music.count("validation"), music.count("evaluation")) == (6, 2, 2)
    household = [a[g] for g in groups["household"]]
    assert set(household) == set(P.POOLS)                      # >= 3 recordings: every pool gets one
    # subkinds are interleaved: neither dishwashers nor vacuums all land in train
    assert {a[f"dish_{i}"] for i in range(4)} != {"train"} and {a[f"vac_{i}"] for i in range(3)} != {"train"}
    # another source name reshuffles, but fixed pools are kept
    b = P.assign_pools("other", groups, fixed={"fan_a": "evaluation"})
    assert b["fan_a"] == "evaluation"
    with pytest.raises(P.PrepareError):
        P.assign_pools("src", {"music": ["x"]}, fixed={"x": "test"})


def make_noise_repo(root: Path) -> Path:
    """A folder shaped like Timgrau/Projektarbeit-1: noise_data/resampled/{type}_{n}.wav."""
    d = root / "noise_data" / "resampled"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for kind, n in (("aircon", 3), ("dishwasher", 4), ("vacuuming", 3), ("street", 2)):
        for i in range(n):
            x = 0.1 * rng.standard_normal((44100, 2))
            sf.write(d / f"{kind}_{i}.wav", x, 44100, subtype="PCM_16")
    (root / "README.md").write_text("noise\n")
    return root


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_prepare_noise_from_a_folder(tmp_path):
    repo = make_noise_repo(tmp_path / "repo")
    out = tmp_path / "out"
    summary = P.prepare(P.SOURCES["timgrau_household"], repo, out, log=lambda _: None)
    columns, rows = read_rows(out / "manifest.csv")
    assert tuple(columns) == P.NOISE_COLUMNS
    assert len(rows) == 12 and summary["files"] == 12
    for r in rows:
        info = sf.info(out / r["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(float(r["duration_s"]) - 1.0) < 1e-3
        assert r["kind"] in P.NOISE_KINDS and r["pool"] in P.POOLS and r["source_recording"]
        assert r["sha256"] == P.sha256_file(out / r["path"])
        assert r["source_repo"] == "Timgrau/Projektarbeit-1@unversioned"
    pools_by_rec: dict[str, set[str]] = {}
    for r in rows:
        pools_by_rec.setdefault(r["source_recording"], set()).add(r["pool"])
    assert all(len(p) == 1 for p in pools_by_rec.values())     # disjoint by source recording
    household = {r["pool"] for r in rows if r["kind"] == "household"}
    assert household == set(P.POOLS)
    assert json.loads((out / "corpus.json").read_text())["kind"] == "noise"
    # a second run gives byte-identical manifests
    out2 = tmp_path / "out2"
    P.prepare(P.SOURCES["timgrau_household"], repo, out2, log=lambda _: None)
    assert (out / "manifest.csv").read_text() == (out2 / "manifest.csv").read_text()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_prepare_emotion_from_a_bare_git_snapshot(tmp_path):
    work = tmp_path / "work"
    for j, (folder, letter) in enumerate((("Angry", "A"), ("Sad", "S"))):
        (work / folder).mkdir(parents=True)
        for k, speaker in enumerate(("SM1", "SF2")):
            sf.write(work / folder / f"{speaker}_F{k + 1}_{letter}0{k + 1}.wav",
                     tone(44100, 0.5, 300.0 + 10 * k + 50 * j, 1), 44100)
    (work / "Sad" / "SM1_F9_S09.wav").write_bytes((work / "Sad" / "SM1_F1_S01.wav").read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "."], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "x"], check=True)
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    commit = subprocess.run(["git", "--git-dir", str(bare), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()

    out = tmp_path / "urdu"
    notes: list[str] = []
    summary = P.prepare(P.SOURCES["urdu"], bare, out, log=notes.append)
    assert any("written for" in n for n in notes)              # not the pinned commit: said so
    columns, rows = read_rows(out / "manifest.csv")
    assert tuple(columns) == P.EMOTION_COLUMNS
    ravdess_columns = ("path", "corpus", "vocal_channel", "speaker", "sex", "emotion", "intensity", "statement",
                       "repetition", "duration_s", "sha256", "source_repo", "source_path", "source_md5",
                       "duplicate_of")
    assert set(ravdess_columns) <= set(columns)
    assert len(rows) == 5
    by_path = {r["path"]: r for r in rows}
    first = by_path["Angry/SM1_F1_A01.flac"]
    assert (first["speaker"], first["sex"], first["emotion"], first["corpus_label"]) == ("urdu_SM1", "male", "angry", "Angry")
    assert first["source_repo"] == f"siddiquelatif/URDU-Dataset@{commit}"
    assert by_path["Sad/SM1_F9_S09.flac"]["duplicate_of"] == "Sad/SM1_F1_S01.flac"
    assert all(r["emotion"] in P.MOODMIC_LABELS for r in rows)
    assert summary["classes"] == list(P.SOURCES["urdu"].classes)
    assert sf.info(out / "Sad/SF2_F2_S02.flac").samplerate == 16000


def test_cli_list_and_limit(tmp_path, capsys):
    assert P.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"github:{s.repo}" in listed for s in P.SOURCES.values())
    repo = make_noise_repo(tmp_path / "repo")
    assert P.main(["timgrau_household", "--mirror", str(repo), "--out", str(tmp_path / "o"), "--limit", "2"]) == 0
    _, rows = read_rows(tmp_path / "o" / "manifest.csv")
    assert len(rows) == 2
    assert P.main(["summary", str(tmp_path)]) == 0
    assert P.main(["urdu", "--mirror", str(repo), "--out", str(tmp_path / "u")]) == 2   # no URDU files there


def test_rendered_music_and_listed_sources(tmp_path):
    """rendered_music takes every top-level WAV of render_music.py's folder as one music recording, pooled
    disjointly; a source whose files are listed in sources.json refuses a snapshot missing one of them."""
    folder = tmp_path / "rendered"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"{c}_piece{i}" for c in ("bach", "joplin", "essenFolksong") for i in range(4)]
    for n in names:
        sf.write(folder / f"{n}.wav", 0.1 * rng.standard_normal(16000).astype("float32"), 16000, subtype="PCM_16")
    (folder / "rendered.json").write_text("{}")
    out = tmp_path / "out"
    P.prepare(P.SOURCES["rendered_music"], folder, out, log=lambda _: None)
    _, rows = read_rows(out / "manifest.csv")
    assert sorted(r["source_recording"] for r in rows) == sorted(names)
    assert {r["kind"] for r in rows} == {"music"} and {r["pool"] for r in rows} == set(P.POOLS)
    assert {r["subkind"] for r in rows} == {"rendered_bach", "rendered_joplin", "rendered_essenFolksong"}
    with pytest.raises(P.PrepareError, match="not in the snapshot"):
        P.prepare(P.SOURCES["max_audio_samples"], folder, tmp_path / "out2", log=lambda _: None)
