"""The benchmarks: `moodmic bench` (device rows, edge install alone) and `moodmic-bench` (every row, the
desktop with TensorFlow) work, and their tables are complete and sane (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_FLOAT, TINY_INT8, run_moodmic

ROWS = ("1", "2", "3", "4", "5", "6")
DESKTOP_ROWS = ("1", "2")  # the upstream TensorFlow/librosa stack: only `moodmic-bench` measures them
HAVE_TF = all(importlib.util.find_spec(m) for m in ("tensorflow", "tf_keras", "keras_self_attention", "librosa"))
# What no process of the device bench may import (tests/test_layering.py checks the source the same way).
DESKTOP_ONLY = ("trainer", "converter", "bench", "research", "tensorflow", "tf_keras", "keras", "keras_self_attention",
                "librosa")
# Put first on PYTHONPATH, this makes every Python process started with it (the bench and each of its
# rows and daemons) refuse DESKTOP_ONLY modules as if they were not installed, and log each attempt.
BLOCKER = """
import os, sys

BLOCKED = set(os.environ["MOODMIC_TEST_BLOCKED"].split(","))
LOG = os.environ["MOODMIC_TEST_BLOCKED_LOG"]


class _DesktopBlocker:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(LOG, "a") as f:
                f.write(f"{name} imported by {' '.join(sys.argv)}\\n")
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: an edge-only install)", name=name)
        return None


sys.meta_path.insert(0, _DesktopBlocker)
"""


def table_rows(markdown: str) -> dict[str, str]:
    """The main results table: row number -> the whole Markdown line."""
    section = markdown.split("## Results", 1)[1].split("Wall time", 1)[0]
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| ([1-6]) \|.*$", section, re.M)}


def check_measured(row: dict, key: str, min_model_bytes: int = 100_000) -> None:
    assert row["ok"], (key, row["skipped"])
    assert 5 < row["peak_rss_mb"] < 4000, (key, row["peak_rss_mb"])  # MB, not kB or bytes
    assert row["cpu_s_per_min"] > 0 and row["process_cpu_s"] > 0 and row["process_wall_s"] > 0
    if key == "6":
        assert row["windows"] > 0 and row["inferred"] == row["windows"] and row["gated"] == 0  # gate off
        assert row["windows_per_s"] > 0 and row["audio_s"] > 20
        assert 0 < row["start_to_listening_s"] < 60
    else:
        for part in ("feat_cpu", "inf_cpu", "total_cpu", "feat_wall", "inf_wall", "total_wall"):
            assert 0 < row[part]["median"] <= row[part]["p95"] <= row[part]["max"], (key, part, row[part])
        assert row["windows"] >= 5 and row["total_cpu"]["mean"] > 0
        assert 0 < row["import_load_s"] < 120 and row["model_bytes"] > min_model_bytes


def run_bench(tmp_path: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, str, dict]:
    """`moodmic bench --quick`: the device rows."""
    out, js = tmp_path / "BENCH.md", tmp_path / "bench.json"
    proc = run_moodmic("bench", "--quick", "--out", str(out), "--json", str(js), *extra, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, out.read_text(), json.loads(js.read_text())


def run_desktop_bench(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, str, dict]:
    """`moodmic-bench --quick`: every row."""
    out, js = tmp_path / "BENCH.md", tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "--quick", "--out", str(out), "--json", str(js), *extra],
                          capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, out.read_text(), json.loads(js.read_text())


@pytest.mark.tensorflow
@pytest.mark.skipif(not HAVE_TF, reason="the upstream rows need the train extra (TensorFlow)")
def test_quick_desktop_bench_has_every_row_with_sane_numbers(ravdess, tmp_path):
    proc, md, data = run_desktop_bench(tmp_path)
    rows = table_rows(md)
    assert sorted(rows) == list(ROWS), md
    for key in ROWS:
        check_measured(data["rows"][key], key)
        assert "skipped" not in rows[key] and "FAILED" not in rows[key]
        assert re.search(r"\| \d+ MB \|", rows[key]) or re.search(r"\*\*\d+ MB\*\*", rows[key]), rows[key]
    # The upstream stack carries TensorFlow; the edge rows do not.
    assert data["rows"]["1"]["peak_rss_mb"] > data["rows"]["4"]["peak_rss_mb"]
    assert data["cpu_per_min_ratio_row1_over_daemon"] > 0
    assert "## Acceptance" in md and "## Raspberry Pi: an estimate" in md and "## aarch64 and armv7l" in md
    assert "M multiply-accumulates per window" in md
    budget = md.split("## Budget (issue 10)", 1)[1].split("\n## ", 1)[0]  # the default bundle's, rows 4 and 6
    assert "budget <= 12 MB: **PASS**" in budget and "budget <= 100 MB: **PASS**" in budget, budget
    assert re.search(r"\(row 4, CPU time, p95; no enhancement runs\): \*\*\d+\.\d\d ms\*\* .* budget <= 10 ms", budget)
    assert "| 1 |" in proc.stdout and "written to" in proc.stdout  # the table on stdout too
    assert "Produced by `moodmic-bench` (bench/cli.py)" in md
    assert "- **Command:** `moodmic-bench --quick --out " in md  # the report names the command that made it


def test_device_bench_works_without_tensorflow_or_the_desktop_packages(ravdess, tmp_path):
    # Every process of `moodmic bench` refuses trainer, converter, bench, TensorFlow, librosa, ... as an
    # edge-only install would, and logs any attempt: the bench must succeed and attempt none.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "blocked.log"
    log.touch()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")])),
           "MOODMIC_TEST_BLOCKED": ",".join(DESKTOP_ONLY), "MOODMIC_TEST_BLOCKED_LOG": str(log)}
    probe = subprocess.run([sys.executable, "-c", "import trainer"], capture_output=True, text=True, cwd=REPO,
                           env={**os.environ, **env}, timeout=60)
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the blocker works
    log.write_text("")
    # Rows 3 and 5 from models given on the command line (the tiny fixtures: float32 and int8 bundles).
    _, md, data = run_bench(tmp_path, "--float32", str(TINY_FLOAT), "--int8", str(TINY_INT8 / "model.tflite"),
                               env=env)
    assert log.read_text() == "", log.read_text()
    rows = table_rows(md)
    assert sorted(rows) == list(ROWS), md  # every row is still in the table
    for key in DESKTOP_ROWS:
        assert not data["rows"][key]["ok"]
        assert "skipped" in rows[key] and "`moodmic-bench`" in rows[key] and "TensorFlow" in rows[key], rows[key]
    for key in ("3", "4", "5", "6"):  # the device rows need no TensorFlow
        check_measured(data["rows"][key], key, min_model_bytes=10_000)  # rows 3, 5: the tiny models
    assert "not measured" in md.split("## Acceptance", 1)[1]  # no row 1, no ratio: said, not invented
    assert data["cpu_per_min_ratio_row1_over_daemon"] is None
    assert "Produced by `moodmic bench` (edge/bench.py)" in md
    assert f"- **Command:** `moodmic bench --quick --float32 {TINY_FLOAT} --int8 {TINY_INT8 / 'model.tflite'} --out " in md
    macs = data["yardstick"]["macs"]
    assert macs["float32"]["by_op"]["CONV_2D"] == 32 * 5 * 128 * 8 and "dynamic (shipped)" in macs


def test_device_bench_leaves_rows_3_and_5_to_the_desktop_without_models(ravdess, tmp_path):
    _, md, data = run_bench(tmp_path)
    rows = table_rows(md)
    for key, mode in (("3", "float32"), ("5", "int8")):
        assert not data["rows"][key]["ok"] and f"give --{mode} PATH" in rows[key], rows[key]
    check_measured(data["rows"]["4"], "4")


def test_macs_match_a_hand_count():
    from edge.bench_rows import count_macs
    from edge.bundle import load_bundle

    # tests/make_tiny_bundle.py on (130, 128): Conv1D 8 k5 stride 4 (32 steps), LSTM 8, Dense 8.
    macs = count_macs((TINY_FLOAT / "model.tflite").read_bytes())["by_op"]
    assert macs["CONV_2D"] == 32 * 5 * 128 * 8
    assert macs["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 32 * 4 * 8 * (8 + 8)
    assert macs["FULLY_CONNECTED"] == 8 * 8
    shipped = count_macs(load_bundle().tflite_path.read_bytes())["by_op"]
    assert shipped["CONV_2D"] > 1_000_000  # the shipped model is counted too (its convolutions dominate)


def test_peak_rss_is_the_childs_own_not_inherited_from_the_parent():
    # Linux keeps the pre-exec high-water mark in ru_maxrss: a big parent would make every child look big.
    code = "import numpy as np; from edge.bench import run_child; import sys; big = np.ones(40_000_000); " \
           "c = run_child([sys.executable, '-c', 'pass']); print(c.maxrss_mb, c.rc)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    peak, rc = proc.stdout.split()
    assert rc == "0" and 0 < float(peak) < 60, proc.stdout + proc.stderr  # the parent holds > 300 MB
