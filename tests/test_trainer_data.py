"""Trainer data path without TensorFlow: corpus, splits, augmentation, feature cache, training windows."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.audio import load_audio
from edge.errors import BadAudioError, ConfigError, MissingInputError, UsageError
from edge.features import FeatureParams, Frontend, file_windows, stack
from trainer.augment import Augmentation, AugmentSettings, plan_copies
from trainer.cache import FeatureCache, frontend_key
from trainer.corpus import LABELS, load_corpus, parse_ravdess_name, write_manifest
from trainer.data import build_training_data, oversample, training_items
from trainer.progress import progress
from trainer.splits import SplitSettings, actor_folds, make_split

from trainer_synth import DUPLICATE, SR, make_corpus

P = FeatureParams()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def corpus(synth):
    return load_corpus(synth)


# ---- corpus


def test_ravdess_names_parse_speech_and_song():
    speech = parse_ravdess_name("03-01-05-02-01-01-07")
    assert speech == {"modality": "03", "channel": "speech", "label": "angry", "intensity": "strong", "statement": "01",
                      "repetition": "01", "speaker": "07", "sex": "male"}
    song = parse_ravdess_name("03-02-01-01-02-02-18")
    assert (song["channel"], song["label"], song["sex"]) == ("song", "neutral", "female")
    assert [parse_ravdess_name(f"03-01-{e:02d}-01-01-01-01")["label"] for e in range(1, 9)] == list(LABELS)
    for bad in ("03-03-01-01-01-01-01", "03-01-09-01-01-01-01", "03-01-01-03-01-01-01", "03-01-01-01-01-01", "x"):
        with pytest.raises(ValueError):
            parse_ravdess_name(bad)


def test_synthetic_corpus_labels_speakers_and_duplicate(corpus, synth):
    assert corpus.source == "ravdess-names" and corpus.labels == LABELS
    assert len(corpus.clips) == 225 and len(corpus.usable) == 224
    dup = [c for c in corpus.clips if c.duplicate_of]
    assert [(c.name, c.duplicate_of) for c in dup] == [(DUPLICATE[1], DUPLICATE[0])]
    assert {c.speaker: c.sex for c in corpus.usable}["01"] == "male"
    assert Counter(c.channel for c in corpus.usable) == {"speech": 128, "song": 96}


def test_manifest_corpus_with_paths_relative_to_the_csv(corpus, tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "mine.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "emotion", "speaker"])  # `emotion` is accepted for `label`
        for c in corpus.clips[:30]:
            w.writerow([os.path.relpath(c.path, manifest.parent), "mood-" + c.label, "spk" + c.speaker])
    got = load_corpus(manifest)
    assert got.source == "manifest" and got.manifest == manifest
    assert [c.path for c in got.clips] == sorted(c.path for c in corpus.clips[:30])
    assert got.labels == tuple(sorted({"mood-" + c.label for c in corpus.clips[:30]}))  # not RAVDESS: sorted
    assert {c.speaker for c in got.clips} == {"spk" + c.speaker for c in corpus.clips[:30]}


def test_written_manifest_lists_every_clip_with_its_split_and_reloads(corpus, tmp_path):
    out = io.StringIO()
    split = make_split(corpus, SplitSettings(folds=4), seed=0)
    write_manifest(out, corpus, split.part_of)
    (tmp_path / "used.csv").write_text(out.getvalue())
    again = load_corpus(tmp_path / "used.csv")
    assert [(c.label, c.speaker, c.sex, c.channel, c.sha256) for c in again.usable] == [
        (c.label, c.speaker, c.sex, c.channel, c.sha256) for c in corpus.usable
    ]
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == len(corpus.clips)
    assert {r["split"] for r in rows if r["duplicate_of"]} == {""}
    assert {r["split"] for r in rows if not r["duplicate_of"]} == {"train", "val", "test"}


def _manifest(folder: Path, clips, **extra) -> Path:
    path = folder / "m.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", *extra])
        for i, c in enumerate(clips):
            w.writerow([c.path, "mood-" + c.label, c.speaker, *(v[i] for v in extra.values())])
    return path


def test_corpus_errors_are_clear(tmp_path, corpus):
    with pytest.raises(MissingInputError, match="no such folder"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no RAVDESS-named audio"):
        load_corpus(tmp_path / "empty")
    (tmp_path / "bad.csv").write_text("path,speaker\nx.wav,1\n")
    with pytest.raises(ConfigError, match="lacks column"):
        load_corpus(tmp_path / "bad.csv")
    (tmp_path / "norows.csv").write_text("path,label,speaker\n")
    with pytest.raises(MissingInputError, match="no rows"):
        load_corpus(tmp_path / "norows.csv")
    (tmp_path / "gone.csv").write_text("path,label,speaker\nmissing.wav,sad,1\n")
    with pytest.raises(MissingInputError, match="missing.wav: no such file"):
        load_corpus(tmp_path / "gone.csv")
    with pytest.raises(BadAudioError, match="sha256 differs"):
        load_corpus(_manifest(tmp_path, corpus.clips[:2], sha256=["0" * 64, ""]))
    a = next(c for c in corpus.clips if c.duplicate_of)
    b = next(c for c in corpus.clips if c.name == a.duplicate_of)
    path = _manifest(tmp_path, [a, b])
    path.write_text(path.read_text().replace("mood-happy", "mood-sad", 1))
    with pytest.raises(ConfigError, match="same recording with different labels"):
        load_corpus(path)
    bad_name = tmp_path / "named"
    bad_name.mkdir()
    sf.write(bad_name / "03-01-09-01-01-01-01.wav", np.ones(SR, np.float32) * 0.1, SR)
    with pytest.raises(BadAudioError, match="invalid emotion"):
        load_corpus(bad_name)


def test_real_ravdess_corpus(ravdess):
    c = load_corpus(ravdess)
    assert c.source == "ravdess-names" and c.labels == LABELS
    assert len(c.clips) == 2036 and len(c.usable) == 2035
    (dup,) = [x for x in c.clips if x.duplicate_of]
    assert (dup.name, dup.duplicate_of) == ("speech/Actor_07/03-01-03-01-02-02-07.flac",
                                            "speech/Actor_07/03-01-03-01-02-01-07.flac")
    assert len({x.speaker for x in c.usable}) == 20
    folds = actor_folds(c, 5, seed=0)
    assert sorted(a for f in folds for a in f) == [f"{i:02d}" for i in range(1, 21)]
    for f in folds:  # 2 male + 2 female actors per fold
        assert sorted(int(a) % 2 for a in f) == [0, 0, 1, 1]


# ---- splits


def test_actor_split_is_speaker_independent_and_folds_partition_speakers(corpus):
    speakers = {c.speaker for c in corpus.usable}
    tests = []
    for k in range(4):
        split = make_split(corpus, SplitSettings(folds=4, fold=k), seed=3)
        sides = {p: {c.speaker for c in split.clips(corpus, p)} for p in ("train", "val", "test")}
        assert not (sides["train"] & sides["val"]) and not (sides["train"] & sides["test"]) and not (sides["val"] & sides["test"])
        assert sides["train"] | sides["val"] | sides["test"] == speakers
        assert len(sides["val"]) == 2 and {int(s) % 2 for s in sides["val"]} == {0, 1}  # one of each sex
        assert {int(s) % 2 for s in sides["test"]} == {0, 1}
        tests.append(sides["test"])
        d = split.describe(corpus)
        assert d["test"]["actors"] == sorted(sides["test"]) and d["train"]["clips"] == len(split.clips(corpus, "train"))
    assert set().union(*tests) == speakers and sum(map(len, tests)) == len(speakers)
    settings = SplitSettings(folds=4, fold=1)
    assert make_split(corpus, settings, 3).part_of == make_split(corpus, settings, 3).part_of
    explicit = make_split(corpus, SplitSettings(test_actors=("02", "05")), 0)
    assert {c.speaker for c in explicit.clips(corpus, "test")} == {"02", "05"}


def test_stratified_split_is_clip_level_and_stratified(corpus):
    split = make_split(corpus, SplitSettings(kind="stratified", folds=5), seed=0)
    names = {p: {c.name for c in split.clips(corpus, p)} for p in ("train", "val", "test")}
    assert sum(map(len, names.values())) == len(corpus.usable)
    assert not (names["train"] & names["test"]) and not (names["val"] & names["test"]) and not (names["train"] & names["val"])
    test_labels = Counter(c.label for c in split.clips(corpus, "test"))
    total = Counter(c.label for c in corpus.usable)
    assert all(abs(test_labels[label] - total[label] / 5) <= 1 for label in LABELS)  # each class's 1/5
    assert 0.15 < len(names["test"]) / len(corpus.usable) < 0.25


def test_split_errors(corpus):
    for bad in (SplitSettings(kind="random"), SplitSettings(folds=1), SplitSettings(fold=5), SplitSettings(folds=9),
                SplitSettings(test_actors=("99",)), SplitSettings(folds=2, val_actors=4)):
        with pytest.raises(UsageError):
            make_split(corpus, bad, 0)


# ---- augmentation, cache, training windows


def test_augmentation_plan_is_deterministic_and_configurable():
    sha = "ab" * 32
    a = plan_copies(AugmentSettings(copies=3), 0, sha)
    assert a == plan_copies(AugmentSettings(copies=3), 0, sha) and len({x.key() for x in a}) == 3
    assert a != plan_copies(AugmentSettings(copies=3), 1, sha)
    for x in a:
        assert 15 <= x.snr_db <= 30 and abs(x.semitones) <= 2 and 0.9 <= x.rate <= 1.1
    off = plan_copies(AugmentSettings(copies=2, noise=False, pitch_semitones=0, stretch=0.05), 0, sha)
    assert all(x.snr_db is None and x.semitones == 0 and x.rate != 1 for x in off)
    assert plan_copies(AugmentSettings(copies=0), 0, sha) == []


def test_augmentation_changes_the_waveform_as_described():
    t = np.arange(SR * 2) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noisy = Augmentation(seed=1, snr_db=10.0, semitones=0.0, rate=1.0).apply(tone, SR)
    snr = 10 * np.log10(np.mean(tone**2) / np.mean((noisy - tone) ** 2))
    assert abs(snr - 10.0) < 0.3
    stretched = Augmentation(seed=1, snr_db=None, semitones=0.0, rate=1.25).apply(tone, SR)
    assert abs(len(stretched) - len(tone) / 1.25) < 0.01 * len(tone)
    shifted = Augmentation(seed=1, snr_db=None, semitones=12.0, rate=1.0).apply(tone, SR)
    spectrum = np.abs(np.fft.rfft(shifted[SR // 2 : SR // 2 + SR]))
    assert len(shifted) == len(tone) and abs(np.argmax(spectrum) - 880) <= 3  # an octave up, same length


def test_cache_entries_are_device_windows_and_keyed_by_the_frontend(corpus, tmp_path):
    frontend = Frontend(P)
    cache = FeatureCache(tmp_path, frontend)
    long_clip = max(corpus.usable, key=lambda c: sf.info(c.path).frames)
    short_clip = min(corpus.usable, key=lambda c: sf.info(c.path).frames)
    assert sf.info(short_clip.path).frames < P.window_samples < sf.info(long_clip.path).frames
    for c in (long_clip, short_clip):
        frames = cache.frames(c)
        assert cache.path(c).is_file() and np.array_equal(cache.frames(c), frames)  # second read: from disk
        hop = P.hop_frames(0.1)
        device = stack(file_windows(frontend, load_audio(c.path, SR), hop))
        ours = np.stack([frames[s : s + P.n_frames] for s in range(0, len(frames) - P.n_frames + 1, hop)])
        assert np.array_equal(ours, device)
    other = Frontend(FeatureParams(n_mels=64))
    assert frontend_key(other) != frontend_key(frontend)
    aug = plan_copies(AugmentSettings(copies=1), 0, long_clip.sha256)[0]
    assert cache.path(long_clip, aug) != cache.path(long_clip) and cache.frames(long_clip, aug).shape[1] == P.n_mels


def test_oversampling_balances_classes_with_whole_repeats():
    y = np.array([0] * 10 + [1] * 4 + [2] * 3)
    rows = oversample(y, np.random.default_rng(0))
    assert Counter(y[rows].tolist()) == {0: 10, 1: 10, 2: 10}
    assert Counter(rows.tolist())[10] in (2, 3) and set(rows[y[rows] == 0].tolist()) == set(range(10))


def test_training_data_windows_come_from_training_clips_only(corpus, tmp_path):
    split = make_split(corpus, SplitSettings(folds=4), 0)
    train, val = split.clips(corpus, "train")[:24], split.clips(corpus, "val")[:6]
    frontend = Frontend(P)
    data = build_training_data(train, val, LABELS, frontend, FeatureCache(tmp_path, frontend),
                               AugmentSettings(copies=1, pitch_semitones=0, stretch=0), P.hop_frames(1.0), seed=0)
    assert len(data.items) == 48 and {it.clip.name for it in data.items} == {c.name for c in train}
    assert len(data.val_x) == sum(data.val_windows) == len(data.val_y)
    items, starts = data.epoch_plan(3, seed=0)
    again = data.epoch_plan(3, seed=0)
    assert np.array_equal(items, again[0]) and np.array_equal(starts, again[1])
    assert not np.array_equal(items, data.epoch_plan(4, seed=0)[0])
    assert Counter(items.tolist()) == Counter(data.rows.tolist())
    x, y = data.windows(items[:16], starts[:16])
    assert x.shape == (16, P.n_frames, P.n_mels) and np.array_equal(y, data.y[items[:16]])
    for i, s in zip(items, starts):
        assert 0 <= s <= len(data.frames[i]) - P.n_frames
    fit_items = tmp_path / "fit_items.csv"
    data.write_fit_items(fit_items)
    rows = list(csv.DictReader(open(fit_items)))
    assert Counter(r["part"] for r in rows) == {"train": 48, "val": 6}
    assert all(r["copy"] == "0" for r in rows if r["part"] == "val")


def test_training_items_are_originals_then_copies():
    from trainer.corpus import Clip

    c = Clip(Path("x.wav"), "x.wav", "sad", "01", sha256="cd" * 32)
    items = training_items([c], AugmentSettings(copies=2), seed=0, sample_rate=16000)
    assert [(it.copy, it.aug is None) for it in items] == [(0, True), (1, False), (2, False)]


def test_progress_writes_quarters_to_a_log():
    out = io.StringIO()
    assert list(progress(range(8), "work", stream=out)) == list(range(8))
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["2/8", "4/8", "6/8", "8/8"]
