"""Audio loading: odd but valid files are converted; bad files fail with a clear message and code."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edge.audio import load_audio
from edge.errors import EXIT_DATAERR, EXIT_NOINPUT, BadAudioError, MissingInputError

from conftest import REPO, SR, run_moodmic, speechlike, write

DECODE_MARGIN_MB = 50  # what decoding any file may add to `predict`'s peak (its blocks are 4 MB)


def dominant_hz(audio: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[np.argmax(spectrum)])


def tone(freq: float, seconds: float, sr: int, level: float = 0.5) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000])
def test_any_common_rate_is_resampled_to_the_model_rate(tmp_path, rate):
    path = write(tmp_path / f"r{rate}.wav", tone(440, 2.0, rate), rate)
    audio = load_audio(path, SR)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(2 * SR, abs=2)
    assert dominant_hz(audio) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(audio[SR // 2 : -SR // 2] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("subtype, tolerance", [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-6),
                                                ("PCM_32", 1e-6), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)])
def test_every_sample_format_is_converted_to_float(tmp_path, subtype, tolerance):
    src = speechlike(1.0)
    audio = load_audio(write(tmp_path / "x.wav", src, SR, subtype), SR)
    assert np.max(np.abs(audio - src)) < tolerance


def test_stereo_and_multichannel_are_downmixed(tmp_path):
    left, right = speechlike(1.0, seed=1), speechlike(1.0, seed=2)
    audio = load_audio(write(tmp_path / "s.wav", np.stack([left, right], axis=1), SR, "FLOAT"), SR)
    assert np.allclose(audio, (left + right) / 2, atol=1e-7)
    six = np.stack([left] * 6, axis=1)
    assert np.allclose(load_audio(write(tmp_path / "6.wav", six, SR, "FLOAT"), SR), left, atol=1e-7)


def test_flac_and_ogg_are_read(tmp_path):
    src = speechlike(1.0)
    assert np.max(np.abs(load_audio(write(tmp_path / "x.flac", src, SR), SR) - src)) < 1e-4
    ogg = load_audio(write(tmp_path / "x.ogg", src, SR), SR)
    assert len(ogg) == len(src)


def test_very_quiet_audio_is_valid(tmp_path):
    quiet = speechlike(1.0, level=0.005)  # peaks at -46 dBFS, like some RAVDESS clips
    assert np.max(np.abs(load_audio(write(tmp_path / "q.wav", quiet, SR), SR))) > 0


def _bad_files(tmp_path):
    ok = write(tmp_path / "ok.wav", speechlike(2.0), SR)
    data = ok.read_bytes()
    flac = write(tmp_path / "ok.flac", speechlike(2.0), SR).read_bytes()
    cases = {
        "empty": (b"", "empty"),
        "truncated_wav": (data[: len(data) // 2], "truncated"),
        "truncated_flac": (flac[: len(flac) // 2], "truncated"),
        "header_only": (data[:44], "truncated"),
        "zero_frames": (None, "no samples"),
        "not_audio": (b"this is a text file, not a recording\n" * 20, "not an audio file"),
        "silence": (None, "digital silence"),
        "nan": (None, "NaN or infinite"),
        "inf": (None, "NaN or infinite"),
        "too_long": (None, "over the 600 s limit"),
        "low_rate": (None, "below 8000 Hz"),
        "high_rate": (None, "384000 Hz is above 192000 Hz"),
        "huge_float": (None, "out of range"),
    }
    paths = {}
    for name, (content, _) in cases.items():
        path = tmp_path / f"{name}.wav"
        if content is not None:
            path.write_bytes(content)
        paths[name] = path
    write(paths["zero_frames"], np.zeros(0, np.float32), SR)
    write(paths["silence"], np.zeros(SR, np.float32), SR)
    nan = speechlike(1.0)
    nan[100] = np.nan
    write(paths["nan"], nan, SR, "FLOAT")
    inf = speechlike(1.0)
    inf[5] = np.inf
    write(paths["inf"], inf, SR, "FLOAT")
    with sf.SoundFile(paths["too_long"], "w", 8000, 1, "PCM_U8") as f:  # 601 s, cheap on disk
        f.write(np.full(8000 * 601, 0.1, np.float32))
    write(paths["low_rate"], tone(440, 1.0, 4000), 4000)
    write(paths["high_rate"], tone(440, 1.0, 384000), 384000)
    write(paths["huge_float"], speechlike(1.0) * 1e30, SR, "FLOAT")  # gave a label, as if it were speech
    return {name: (paths[name], expected) for name, (_, expected) in cases.items()}


def test_bad_audio_raises_a_clear_error(tmp_path):
    for name, (path, expected) in _bad_files(tmp_path).items():
        try:
            audio = load_audio(path, SR, max_seconds=600)
        except BadAudioError as exc:
            info = exc
        else:
            pytest.fail(f"{name}: no BadAudioError; read as {len(audio)} samples peaking at {np.max(np.abs(audio)):g}")
        message = str(info)
        assert expected in message, name
        assert str(path) in message and "\n" not in message, name
        assert info.exit_code == EXIT_DATAERR


def test_float_samples_over_full_scale_are_valid_up_to_1000(tmp_path):
    """Float files may exceed +-1.0 (a mix that clips): read as they are; only absurd values are refused."""
    loud = speechlike(1.0) * 999.0
    assert np.allclose(load_audio(write(tmp_path / "loud.wav", loud, SR, "FLOAT"), SR), loud, rtol=1e-6)


@pytest.mark.parametrize("suffix", [".au", ".snd"])
def test_bytes_without_an_audio_header_are_not_audio_whatever_the_name(tmp_path, suffix):
    """libsndfile reads any bytes named .au or .snd as headerless 8 kHz u-law; from memory (the page) it
    cannot see the name. Both refuse them, so `predict` and the page agree."""
    path = tmp_path / f"notes{suffix}"
    path.write_bytes(b"meeting notes, not a recording\n" * 20)
    with pytest.raises(BadAudioError, match="not an audio file soundfile can read"):
        load_audio(path, SR)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MissingInputError, match="no such file"):
        load_audio(tmp_path / "nope.wav", SR)
    with pytest.raises(MissingInputError, match="is a directory"):
        load_audio(tmp_path, SR)


def test_predict_cli_reports_each_bad_file_and_still_answers_the_good_one(tmp_path):
    from conftest import TINY_INT8

    bad = _bad_files(tmp_path)
    good = write(tmp_path / "good.wav", speechlike(3.0), SR)
    names = sorted(bad)
    proc = run_moodmic("predict", "--model", str(TINY_INT8), str(good), *(str(bad[n][0]) for n in names),
                       str(tmp_path / "missing.wav"))
    assert proc.returncode == EXIT_DATAERR  # the first failure's code
    lines = [line for line in proc.stderr.splitlines() if line.startswith("moodmic: error:")]
    assert len(lines) == len(names) + 1
    for name, line in zip(names, lines):
        assert bad[name][1] in line and str(bad[name][0]) in line
    assert "no such file" in lines[-1]
    assert len(proc.stdout.splitlines()) == 1 and '"path": "' + str(good) in proc.stdout


def test_missing_file_alone_exits_66(tmp_path):
    from conftest import TINY_INT8

    proc = run_moodmic("predict", "--model", str(TINY_INT8), str(tmp_path / "nope.flac"))
    assert proc.returncode == EXIT_NOINPUT and "no such file" in proc.stderr


# Linux carries a process's peak RSS across fork and exec, so a child of this (large) test process would
# report at least our own size: a small launcher forks the CLI and reports that grandchild's wait4 figure.
_LAUNCH = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, "
           "stderr=subprocess.DEVNULL); _, st, ru = os.wait4(p.pid, 0); print(os.waitstatus_to_exitcode(st), ru.ru_maxrss)")


def peak_rss_mb(*args: str) -> tuple[int, float]:
    """Run the CLI in a fresh process and return its exit status and its own peak RSS."""
    out = subprocess.run([sys.executable, "-c", _LAUNCH, sys.executable, "-m", "edge.cli", *args], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1]) / 1024  # kilobytes on Linux


def constant_flac(path, seconds: int, rate: int, channels: int):
    """A constant signal: FLAC stores it in about 2 KB a second, whatever the rate and channels."""
    block = np.full((rate * 10, channels), 0.01, np.float32)
    with sf.SoundFile(path, "w", rate, channels, "PCM_16", format="FLAC") as f:
        for _ in range(seconds // 10):
            f.write(block)
    return path


@pytest.mark.parametrize("seconds", [60, pytest.param(590, marks=pytest.mark.slow)])
def test_memory_does_not_grow_with_the_rate_and_channels_a_file_declares(tmp_path, seconds):
    """590 s at 192 kHz x 8 channels is 1 MB of FLAC and 3.6 GB of float32. Decoded block by block, it costs
    what the same duration at 16 kHz mono costs (the result, and the frontend's work on it), plus a block."""
    from conftest import TINY_INT8

    many = constant_flac(tmp_path / "many.flac", seconds, 192000, 8)
    assert many.stat().st_size < 2 << 20
    plain = constant_flac(tmp_path / "plain.flac", seconds, SR, 1)
    peaks = {}
    for flac in (plain, many):
        code, peaks[flac.name] = peak_rss_mb("predict", "--model", str(TINY_INT8), str(flac))
        assert code == 0
    assert peaks["many.flac"] < peaks["plain.flac"] + DECODE_MARGIN_MB, (
        f"moodmic predict peaked at {peaks['many.flac']:.0f} MB on {seconds} s at 192 kHz x 8 channels, "
        f"{peaks['plain.flac']:.0f} MB at 16 kHz mono")
    # and the frontend takes a long clip in pieces (edge.features.CHUNK_FRAMES): 590 s peaked at 579 MB
    # before, 179 MB after, on this machine
    assert peaks["many.flac"] < 256, f"moodmic predict peaked at {peaks['many.flac']:.0f} MB on {seconds} s"
