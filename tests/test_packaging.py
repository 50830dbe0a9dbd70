"""The device install (`moodmic[edge]`) resolves without TensorFlow or librosa; the wheel carries the model and sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # pip resolving the edge install, building and installing the wheel: -m slow

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


def test_the_wheel_holds_the_model_and_the_sample_and_runs_from_anywhere(tmp_path):
    """moodmic is not on a package index: users install a checkout or a wheel built from one (README).
    The wheel must carry the shipped model bundle and the demo sample, and find them once installed."""
    import shutil
    import zipfile

    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "runs",
                                                             ".*cache", ".hypothesis", "__pycache__"))
    dist = tmp_path / "dist"
    for isolation in (["--no-build-isolation"], []):  # offline with this venv's setuptools, else from the index
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation, "-w",
                               str(dist), str(src)], capture_output=True, text=True, timeout=600)
        if proc.returncode == 0:
            break
    else:
        if "Could not find" in proc.stderr or "NewConnectionError" in proc.stderr:
            pytest.skip(f"no setuptools here and the package index unreachable: {proc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(proc.stderr)
    (wheel,) = dist.glob("moodmic-*-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"edge/models/default/{n}" for n in ("model.tflite", "model.json", "MODEL_CARD.md")}
    sample = {f"edge/samples/{n}" for n in ("speech.flac", "speech.json", "README.md")}
    assert shipped | sample <= names, sorted((shipped | sample) - names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert all(f"{s} =".encode() in entry_points for s in ("moodmic", "moodmic-train", "moodmic-convert"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "predict", "--sample"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    facts = json.loads((target / "edge" / "samples" / "speech.json").read_text())
    assert result["path"] == str(target / "edge" / "samples" / "speech.flac") and result["label"] == facts["emotion"]
