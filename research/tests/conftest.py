"""Fixtures of research/tests (not collected by the default pytest run: `pytest research/tests`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESEARCH = REPO / "research"
TINY_FLOAT = REPO / "tests" / "fixtures" / "tiny_float"
sys.path.insert(0, str(RESEARCH))  # the research scripts import each other by module name
sys.path.append(str(REPO / "tests"))  # trainer_synth: the trainer tests' synthetic corpus

from edge.data_path import data_dir  # noqa: E402

RAVDESS = data_dir(REPO)


@pytest.fixture(scope="session")
def ravdess() -> Path:
    if not (RAVDESS / "manifest.csv").is_file():
        pytest.skip(f"real RAVDESS data not found at {RAVDESS}")
    return RAVDESS
