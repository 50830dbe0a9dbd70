"""`moodmic bench`: cost per window, memory and start-up of the edge runtime, measured where it runs.

Rows (each measured in its own fresh process, one thread everywhere, warm-up excluded, over many
windows of real speech, gate off):
  1. upstream stack: librosa load + melspectrogram + power_to_db, Keras `model.predict`
  2. the same Keras model through `model(x, training=False)`
  3. moodmic frontend (only the new frames of each hop) + LiteRT float32
  4. moodmic frontend + LiteRT dynamic-range: the shipped bundle, loaded as the daemon loads it
  5. moodmic frontend + LiteRT int8 (full integer)
  6. the whole daemon: `moodmic run --source file:... --fast --mqtt off` on minutes of speech

This command measures the device rows with the edge install alone: 4 and 6 (and 3 and 5 when given
a float32 or int8 model, e.g. bundles written by `moodmic-convert --mode float32|int8`). Rows 1-2
and the conversions for rows 3 and 5 need TensorFlow: the desktop command `moodmic-bench` (the bench
package, the train extra) measures every row, using this module for the device rows; here they are
listed as desktop rows.

Per-window cost is reported as CPU time of the measuring process (robust to a busy machine) and as
wall time; the machine's load average is written beside the results.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bench_report import previous_aarch64, render, summary
from .bench_rows import vm_hwm_mb
from .data_path import DATA_HELP, data_dir
from .errors import UsageError

HELP = "measure cost per window, memory and start-up of the edge runtime on this machine; write BENCHMARKS.md"
REPO = Path(__file__).resolve().parent.parent
AARCH64_RESULT = Path("/var/cache/moodmic-aarch64/last-result.md")
ROW_TIMEOUT_S = 1800
DEVICE_ROWS_MODULE = "edge.bench_rows"
TITLES = {
    "1": "upstream: librosa load + melspectrogram + power_to_db, Keras `model.predict`",
    "2": "upstream features, Keras `model(x, training=False)`",
    "3": "moodmic frontend + LiteRT float32",
    "4": "moodmic frontend + LiteRT dynamic-range (**shipped bundle**)",
    "5": "moodmic frontend + LiteRT int8",
    "6": "the daemon: `moodmic run --source file:... --fast --mqtt off`, gate off",
}
CONVERTED_ROWS = {"3": "float32", "5": "int8"}  # row -> the conversion of the seed model it times
DESKTOP_ROW = "skipped: a desktop row, `moodmic-bench` measures it (the train extra: TensorFlow)"
THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": "",
}
PACKAGES = ("numpy", "soundfile", "soxr", "ai-edge-litert", "tflite-runtime", "tensorflow", "tf-keras",
            "keras-self-attention", "librosa", "numba")


def configure_parser(p: argparse.ArgumentParser, given_models: bool = True) -> None:
    """The options of `moodmic bench`; `moodmic-bench` takes them without --float32/--int8 (it converts the
    seed model itself) and adds its own."""
    p.add_argument("--quick", action="store_true",
                   help="check that the command works: few windows, 30 s of audio for the daemon (no meaningful timings)")
    p.add_argument("--out", metavar="FILE", type=Path, default=Path("BENCHMARKS.md"), help="report (default BENCHMARKS.md)")
    p.add_argument("--minutes", type=float, help="minutes of speech for the daemon row (default 10; --quick 0.5)")
    p.add_argument("--windows", type=int, help="measured windows per row 1-5 (default 300; --quick 12)")
    p.add_argument("--model", metavar="DIR", help="bundle for rows 4 and 6 (default: the shipped model)")
    for key, mode in CONVERTED_ROWS.items() if given_models else ():
        p.add_argument(f"--{mode}", metavar="PATH", type=Path,
                       help=f"row {key} on this machine: a {mode} .tflite or bundle directory (e.g. moodmic-convert "
                            f"--mode {mode}); without it the row is left to the desktop command")
    p.add_argument("--data", metavar="DIR", type=Path, help=f"RAVDESS folder (default {DATA_HELP})")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the results as JSON")
    p.add_argument("--aarch64-result", metavar="FILE", type=Path,
                   help=f"last result of scripts/aarch64_check.sh to include (default {AARCH64_RESULT} if present, "
                        "else the section already in --out)")


# -- plumbing ------------------------------------------------------------------------------------
@dataclass
class Child:
    rc: int
    wall_s: float
    cpu_s: float  # user + system of the child (and the children it waited for)
    maxrss_mb: float  # peak RSS (VmHWM) of the child's own address space
    result: dict[str, Any] | None
    stderr: str
    started_epoch: float
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def error(self) -> str:
        lines = [line for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit {self.rc}"


def child_env() -> dict[str, str]:
    return {**os.environ, **THREAD_ENV}


class _PeakWatcher(threading.Thread):
    """Polls a child's VmHWM until it exits. (wait4's ru_maxrss cannot be used: Linux keeps the high-water
    mark of the address space a process had before exec, i.e. this parent's, so every child would
    report at least the parent's RSS.)"""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            value = vm_hwm_mb(self.pid)
            if value is not None:
                self.peak = max(self.peak, value)
            self.stop.wait(0.02)


def run_child(cmd: list[str], timeout: float = ROW_TIMEOUT_S, cwd: Path | None = None) -> Child:
    """Run a command in a fresh process: CPU time from wait4 on its pid, peak RSS from its VmHWM."""
    load = os.getloadavg()
    with tempfile.TemporaryFile("w+") as err:
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                env=child_env(), cwd=cwd)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        watcher = _PeakWatcher(proc.pid)
        watcher.start()
        try:
            out = proc.stdout.read() if proc.stdout else ""
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            watcher.stop.set()
            watcher.join()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.stdout:
            proc.stdout.close()
        err.seek(0)
        stderr = err.read()
    result = None
    for line in out.splitlines():
        if line.startswith("BENCH-RESULT "):
            result = json.loads(line[len("BENCH-RESULT "):])
    # A row reports its own VmHWM at its very end (exact); for other commands the last poll is used.
    peak = (result or {}).get("vm_hwm_mb") or watcher.peak
    return Child(proc.returncode, wall, usage.ru_utime + usage.ru_stime, peak, result, stderr, started, load)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        from . import __version__ as moodmic_version
    except ImportError:
        moodmic_version = "?"
    mem_mb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    commit = ""
    if (REPO / ".git").exists():
        try:
            git = ["git", "-C", str(REPO)]
            commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip()
            dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                   text=True, timeout=10).stdout.strip()
            if commit and dirty:
                commit += f" + uncommitted changes in {len(dirty.splitlines())} tracked files"
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(), "commit": commit,
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_mb": mem_mb, "machine": platform.machine(), "kernel": platform.release(),
            "python": platform.python_version(), "moodmic": moodmic_version, "packages": versions}


# -- audio ---------------------------------------------------------------------------------------
def speech_clips(data: Path) -> list[Path]:
    """RAVDESS speech clips, interleaved across actors (actor 1 clip 1, actor 2 clip 1, ...)."""
    actors = sorted(d for d in (data / "speech").glob("Actor_*") if d.is_dir())
    per_actor = [sorted(a.glob("*.flac")) + sorted(a.glob("*.wav")) for a in actors]
    clips = []
    for i in range(max((len(c) for c in per_actor), default=0)):
        clips += [c[i] for c in per_actor if i < len(c)]
    return clips


def write_speech(data: Path, seconds: float, path: Path, rate: int) -> dict[str, Any]:
    """Concatenate real speech clips into one 16-bit WAV of exactly `seconds`."""
    import numpy as np
    import soundfile as sf

    from .audio import load_audio

    clips = speech_clips(data)
    if not clips:
        raise SystemExit(f"moodmic bench: no speech clips under {data}/speech/Actor_*/ (give --data)")
    parts, total, used = [], 0, 0
    need = int(round(seconds * rate))
    while total < need:
        clip = clips[used % len(clips)]
        audio = load_audio(clip, rate)
        parts.append(audio)
        total += len(audio)
        used += 1
    audio = np.concatenate(parts)[:need]
    sf.write(path, audio, rate, subtype="PCM_16")
    return {"seconds": need / rate, "clips": used, "source": str(data)}


def representative(wav: Path, params: Any, count: int) -> Any:
    """Real feature windows (evenly spaced over the speech) for int8 calibration."""
    import numpy as np

    from .audio import load_audio
    from .features import Frontend, file_windows, stack

    frontend = Frontend(params)
    windows = file_windows(frontend, load_audio(wav, params.sample_rate), params.hop_frames(1.0))
    idx = np.linspace(0, len(windows) - 1, min(count, len(windows))).astype(int)
    return stack([windows[i] for i in idx])


# -- rows ----------------------------------------------------------------------------------------
@dataclass
class Row:
    key: str
    title: str
    child: Child | None = None
    skipped: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.skipped and self.child is not None and self.child.rc == 0 and bool(self.data)


def measure_row(spec: dict[str, Any], work: Path, name: str,
                module: str = DEVICE_ROWS_MODULE) -> tuple[Child, dict[str, Any]]:
    """One row in a fresh `python -m MODULE row SPEC.json` process (edge.bench_rows, or the desktop's bench.rows)."""
    spec_path = work / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    child = run_child([sys.executable, "-m", module, "row", str(spec_path)])
    data = dict(child.result or {})
    if data and "loaded_at_epoch" in data:
        data["start_to_loaded_s"] = data["loaded_at_epoch"] - child.started_epoch
    return child, data


DAEMON_CONFIG = """\
model:
  threads: 1
windows:
  hop_seconds: {hop}
gate:
  enabled: {gate}
logging:
  level: INFO
"""
HEALTH_RE = re.compile(r"health: (\d+) windows \((\d+) gated, (\d+) inferred\).* ([\d.]+) s audio")
LOG_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO edge\.daemon: listening to")


def measure_daemon(wav: Path, audio_s: float, hop: float, gate: bool, model: str | None,
                   work: Path) -> tuple[Child, dict[str, Any]]:
    cfg = work / f"daemon-gate-{'on' if gate else 'off'}.yaml"
    cfg.write_text(DAEMON_CONFIG.format(hop=hop, gate=str(gate).lower()))
    cmd = [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", f"file:{wav}", "--fast",
           "--mqtt", "off"] + (["--model", model] if model else [])
    child = run_child(cmd)
    data: dict[str, Any] = {}
    health = [m for m in HEALTH_RE.finditer(child.stderr)]
    if child.rc == 0 and health:
        consumed, gated, inferred, audio = health[-1].groups()
        data = {"windows": int(consumed), "gated": int(gated), "inferred": int(inferred), "audio_s": float(audio),
                "windows_per_s": int(consumed) / child.wall_s,
                "cpu_s_per_min": child.cpu_s / (audio_s / 60.0),
                "cpu_ms_per_window": child.cpu_s * 1000.0 / max(1, int(consumed)),
                "wall_ms_per_window": child.wall_s * 1000.0 / max(1, int(consumed)),
                "realtime_factor": audio_s / child.wall_s}
        for line in child.stderr.splitlines():
            m = LOG_TIME_RE.match(line)
            if m:
                listening = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                data["start_to_listening_s"] = listening - child.started_epoch
                break
    return child, data


def start(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The session both commands measure in: the bundle, the speech file, the rows (none measured yet)."""
    from .bundle import load_bundle
    from .config import Settings

    quick = args.quick
    minutes = args.minutes if args.minutes is not None else (0.5 if quick else 10.0)
    n_windows = args.windows if args.windows is not None else (12 if quick else 300)
    n_warmup = 3 if quick else 10
    hop = Settings().windows.hop_seconds
    bundle = load_bundle(args.model or None)
    params = bundle.features
    data = args.data or data_dir()
    wav = work / "speech.wav"
    speech = write_speech(data, minutes * 60.0, wav, params.sample_rate)
    max_windows = int((speech["seconds"] - params.window_seconds) // hop) - n_warmup - 1
    if max_windows < 1:
        raise SystemExit("moodmic bench: not enough audio for one measured window; raise --minutes")
    n_windows = min(n_windows, max_windows)
    base = {"wav": str(wav), "hop_s": hop, "window_s": params.window_seconds, "features": params.to_dict(),
            "warmup": n_warmup, "windows": n_windows}
    return {"speech": speech, "hop": hop, "windows": n_windows, "warmup": n_warmup, "quick": quick,
            "bundle": {"path": str(bundle.path), "name": bundle.name,
                       "mode": (bundle.info.get("conversion") or {}).get("mode", "?"), "labels": list(bundle.labels),
                       "training": (bundle.info.get("training") or {}).get("name")},
            "rows": {k: Row(k, t) for k, t in TITLES.items()}, "notes": [], "load_start": os.getloadavg(),
            "started": time.time(), "base": base, "data": str(data), "params": params, "wav": wav}


def given_models(args: argparse.Namespace, res: dict[str, Any]) -> dict[str, Path]:
    """Rows 3 and 5 on a device: the float32 / int8 models given on the command line, else desktop rows."""
    tflites: dict[str, Path] = {}
    for key, mode in CONVERTED_ROWS.items():
        path = getattr(args, mode, None)
        if path is None:
            res["rows"][key].skipped = (f"skipped: a desktop row, `moodmic-bench` converts the seed model to {mode} "
                                        f"(TensorFlow); or give --{mode} PATH")
            continue
        tflites[mode] = path / "model.tflite" if path.is_dir() else path
        if not tflites[mode].is_file():
            raise UsageError(f"--{mode} {path}: no such .tflite file or bundle directory")
        res["model_source"] = "the models given (" + ", ".join(f"{m} `{p}`" for m, p in tflites.items()) + ")"
    return tflites


def measure_device(args: argparse.Namespace, res: dict[str, Any], work: Path, tflites: dict[str, Path],
                   mobilenet: Path | None = None) -> None:
    """Rows 3 and 5 (for the models in `tflites`), 4 and 6, the daemon's gate-on and start-up runs, the yardstick."""
    rows, base, wav, params, hop = res["rows"], res["base"], res["wav"], res["params"], res["hop"]
    for key, mode in CONVERTED_ROWS.items():
        if not rows[key].skipped:
            if mode not in tflites:
                rows[key].skipped = f"skipped: no {mode} model (see notes)"
                continue
            rows[key].child, rows[key].data = measure_row({**base, "kind": "litert", "tflite": str(tflites[mode])},
                                                          work, f"row{key}")
    rows["4"].child, rows["4"].data = measure_row({**base, "kind": "litert", "bundle": res["bundle"]["path"]},
                                                  work, "row4")
    rows["6"].child, rows["6"].data = measure_daemon(wav, res["speech"]["seconds"], hop, False, args.model, work)
    gate_on = measure_daemon(wav, res["speech"]["seconds"], hop, True, args.model, work)
    res["daemon_gate_on"] = {"child": gate_on[0], "data": gate_on[1]}
    # The daemon's start-up cost: the same command on one window's worth of audio. Subtracting it gives
    # the steady state of a daemon that runs all day.
    short = work / "one-window.wav"
    short_s = write_speech(Path(res["data"]), params.window_seconds + 0.2, short, params.sample_rate)["seconds"]
    start_child, _ = measure_daemon(short, short_s, hop, False, args.model, work)
    if rows["6"].ok and start_child.rc == 0:
        d6 = rows["6"].data
        d6["startup_cpu_s"] = start_child.cpu_s
        d6["steady_cpu_s_per_min"] = (max(0.0, rows["6"].child.cpu_s - start_child.cpu_s)
                                      / ((res["speech"]["seconds"] - short_s) / 60.0))

    # The yardstick for the Raspberry Pi estimate: MACs of the graphs, MobileNetV2 on this machine.
    yard = {"kind": "yardstick", "tflites": {"dynamic (shipped)": str(Path(res["bundle"]["path"]) / "model.tflite"),
                                             **{m: str(p) for m, p in tflites.items()}},
            "mobilenet": str(mobilenet) if mobilenet else None, "invokes": 10 if res["quick"] else 40}
    (work / "yardstick.json").write_text(json.dumps(yard))
    child = run_child([sys.executable, "-m", DEVICE_ROWS_MODULE, "row", str(work / "yardstick.json")])
    res["yardstick"] = child.result if child.rc == 0 else {"error": child.error()}
    for row in rows.values():
        if not row.skipped and not row.ok:
            row.skipped = f"FAILED: {row.child.error() if row.child else 'not run'}"
    res["load_end"] = os.getloadavg()
    res["finished"] = time.time()


# The desktop's part (bench/cli.py): measures rows 1-2 into `res` and returns the float32 / int8 models
# for rows 3 and 5 and a MobileNetV2 .tflite for the yardstick.
DesktopRows = Callable[[argparse.Namespace, dict[str, Any], Path], tuple[dict[str, Path], Path | None]]


def command_line(prog: str, args: argparse.Namespace, extra: str = "") -> str:
    """The command as typed when run through its console script, else rebuilt from the options."""
    argv0 = Path(sys.argv[0]).name if sys.argv else ""
    if argv0 == prog.split()[0]:
        return " ".join([argv0] + [shlex.quote(a) for a in sys.argv[1:]])
    out = str(args.out)
    return (prog + (" --quick" if args.quick else "") + extra
            + "".join(f" --{m} {getattr(args, m)}" for m in CONVERTED_ROWS.values() if getattr(args, m, None))
            + (f" --out {out}" if out != "BENCHMARKS.md" else ""))


def run_bench(args: argparse.Namespace, command: str, desktop: DesktopRows | None = None,
              producer: str = "`moodmic bench` (edge/bench.py)") -> int:
    """Measure (the desktop's rows too when `desktop` is given), write the report, print the table."""
    out_path: Path = args.out
    aarch64_file = args.aarch64_result or (AARCH64_RESULT if AARCH64_RESULT.is_file() else None)
    aarch64 = aarch64_file.read_text() if aarch64_file and aarch64_file.is_file() else previous_aarch64(out_path)
    mach = machine()
    with tempfile.TemporaryDirectory(prefix="moodmic-bench-") as tmp:
        work = Path(tmp)
        res = start(args, work)
        res["producer"] = producer
        if desktop is None:
            for key in ("1", "2"):
                res["rows"][key].skipped = DESKTOP_ROW
            tflites, mobilenet = given_models(args, res), None
        else:
            tflites, mobilenet = desktop(args, res, work)
        measure_device(args, res, work, tflites, mobilenet)
    text = render(res, mach, command, aarch64)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary(res, mach), indent=2, default=str) + "\n")
    # The table and the verdicts on stdout as well.
    lines = text.splitlines()
    begin = lines.index("## Results")
    end = next(i for i, line in enumerate(lines) if line.startswith("## Raspberry Pi"))
    print("\n".join(lines[begin:end]))
    print(f"written to {out_path}")
    failed = [r for r in res["rows"].values() if r.skipped.startswith("FAILED")]
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    return run_bench(args, command_line("moodmic bench", args))
