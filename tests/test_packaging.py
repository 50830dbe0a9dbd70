"""The device install (`moodmic[edge]`) resolves without TensorFlow or librosa."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

HEAVY = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "librosa", "numba", "llvmlite", "scipy", "torch"}


def test_edge_extra_pulls_no_tensorflow_or_librosa(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), f"{REPO}[edge]"],
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0 and ("Could not find" in proc.stderr or "NewConnectionError" in proc.stderr):
        pytest.skip(f"package index unreachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert {"moodmic", "numpy", "soundfile", "soxr", "paho-mqtt", "sounddevice", "sdnotify", "pyyaml"} <= names
    assert "ai-edge-litert" in names or "tflite-runtime" in names
    assert not names & HEAVY, f"the edge install would pull {sorted(names & HEAVY)}"
