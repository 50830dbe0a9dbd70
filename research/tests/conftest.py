"""Fixtures of research/tests (not collected by the default pytest run: `pytest research/tests`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESEARCH = REPO / "research"
TINY_FLOAT = REPO / "tests" / "fixtures" / "tiny_float"
TINY_INT8 = REPO / "tests" / "fixtures" / "tiny_int8"
sys.path.insert(0, str(RESEARCH))  # the research scripts import each other by module name
sys.path.append(str(REPO / "tests"))  # trainer_synth: the trainer tests' synthetic corpus

from edge.data_path import data_dir  # noqa: E402

RAVDESS = data_dir(REPO)


@pytest.fixture(scope="session")
def ravdess() -> Path:
    if not (RAVDESS / "manifest.csv").is_file():
        pytest.skip(f"real RAVDESS data not found at {RAVDESS}")
    return RAVDESS


@pytest.fixture
def replay_run(tmp_path) -> tuple[Path, Path]:
    """(run, noise): a run directory of the trainer tests' synthetic corpus with enough clips per actor and
    emotion for a replay, and a prepared noise folder of one file (clean replays read none, but the bank
    wants one). The replay scripts score it with the TINY_INT8 bundle."""
    import numpy as np
    import soundfile as sf

    from trainer.replay import RUN_CLIPS

    from trainer_synth import fake_run, make_corpus

    run = fake_run(tmp_path, make_corpus(tmp_path / "synth", speakers=4, reps=RUN_CLIPS))
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "fan.flac", 0.01 * np.random.default_rng(0).standard_normal(16000), 16000)
    (noise / "manifest.csv").write_text("path,kind,pool,source\nfan.flac,fan_hum,validation,fan\n")
    return run, noise
