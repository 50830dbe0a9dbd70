"""The benchmarks' report: BENCHMARKS.md (the tables, the acceptance verdicts, the Raspberry Pi estimate)
and the same results as JSON. Pure formatting of what edge/bench.py measured (`moodmic bench` on a
device; `moodmic-bench`, bench/cli.py, adds the desktop's rows and uses this same report)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

# Published figures the Raspberry Pi estimate rests on (see the estimate section of the report).
MOBILENET_V2_MACS = 300e6  # MobileNetV2 1.0/224: 300 M multiply-adds (Sandler et al. 2018, table 6)
PI4_MOBILENET_V2_MS_4T = 46.0  # XNNPACK README, RPi 4 (BCM2711, ARM64), FP32 MobileNet v2 1.0X, multi-threaded
PI4_THREAD_SCALING = (3.0, 4.0)  # 4 threads on 4 cores: single-threaded is 3-4x slower (assumed range)
PI5_OVER_PI4 = (2.0, 3.0)  # Raspberry Pi: Pi 5 "two to three times" the CPU performance of Pi 4
XNNPACK_README = "https://github.com/google/XNNPACK/blob/master/README.md (Raspberry Pi table, benchmarked Feb 8 2022)"
PI5_SOURCE = "https://circuitdigest.com/news/the-new-raspberry-pi-5-is-here-faster-than-ever (launch figures)"


# -- formatting --------------------------------------------------------------------------------------
def _f(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ms(stats: dict[str, float] | None) -> str:
    if not stats:
        return "—"
    d = 2 if stats["median"] < 10 else 1
    return f"{stats['median']:.{d}f} / {stats['p95']:.{d}f}"


def _size(n: int | None) -> str:
    if not n:
        return "—"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def per_minute(row: Any, hop: float, cpu: bool = True) -> float | None:
    """CPU-seconds (or wall seconds) per minute of audio at the hop."""
    if not row.ok:
        return None
    if row.key == "6":
        return row.data["cpu_s_per_min"] if cpu else row.child.wall_s / (row.data["audio_s"] / 60.0)
    mean_ms = row.data["total_cpu" if cpu else "total_wall"]["mean"]
    return mean_ms * (60.0 / hop) / 1000.0


def import_load(row: Any) -> tuple[float | None, float | None]:
    if not row.ok:
        return None, None
    if row.key == "6":
        return row.data.get("start_to_listening_s"), None
    return row.data["import_load_wall_s"], row.data["import_load_cpu_s"]


def pi_estimate(res: dict[str, Any]) -> list[str]:
    rows, hop = res["rows"], res["hop"]
    yard = res.get("yardstick") or {}
    lines = ["## Raspberry Pi: an estimate (not a measurement)", ""]
    macs = (yard.get("macs") or {}).get("dynamic (shipped)")
    if not macs:
        return lines + [f"Not available: {yard.get('error', 'the yardstick process did not run')}.", ""]
    pi4_1t = [PI4_MOBILENET_V2_MS_4T * s for s in PI4_THREAD_SCALING]  # single-threaded MobileNetV2 ms, range
    pi4_gmacs = sorted(MOBILENET_V2_MACS / (ms / 1000.0) / 1e9 for ms in pi4_1t)
    pi5_gmacs = [pi4_gmacs[0] * PI5_OVER_PI4[0], pi4_gmacs[1] * PI5_OVER_PI4[1]]
    m = macs["total"] / 1e6
    by_op = ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in sorted(macs["by_op"].items(), key=lambda kv: -kv[1]))
    lines += [
        f"Op counts, from the shipped `.tflite` graph (tensor shapes of every op): **{m:.1f} M multiply-accumulates per "
        f"window** ({by_op}), plus {macs['elementwise_outputs'] / 1e3:.0f} k outputs of element-wise ops. "
        "The float32 and int8 graphs have the same MACs.", "",
        "Published figures used:",
        f"- Raspberry Pi 4 (BCM2711, Cortex-A72, ARM64): FP32 MobileNet v2 1.0 ({MOBILENET_V2_MACS / 1e6:.0f} M MACs) in "
        f"{PI4_MOBILENET_V2_MS_4T:.0f} ms with XNNPACK, **multi-threaded (4 cores)** — {XNNPACK_README}. One thread is taken "
        f"as {PI4_THREAD_SCALING[0]:.0f}-{PI4_THREAD_SCALING[1]:.0f}x slower ({pi4_1t[0]:.0f}-{pi4_1t[1]:.0f} ms), i.e. "
        f"{pi4_gmacs[0]:.1f}-{pi4_gmacs[1]:.1f} G MAC/s on one Pi 4 core.",
        f"- Raspberry Pi 5 (BCM2712, Cortex-A76 2.4 GHz): \"two to three times\" the CPU performance of a Pi 4 — {PI5_SOURCE}; "
        f"so {pi5_gmacs[0]:.1f}-{pi5_gmacs[1]:.1f} G MAC/s on one core.", "",
    ]
    est_a = [(m / 1e3) / g * 1000.0 for g in reversed(pi4_gmacs)], [(m / 1e3) / g * 1000.0 for g in reversed(pi5_gmacs)]
    lines += ["| method | Pi 4, ms per window (1 thread) | Pi 5, ms per window (1 thread) | Pi 4, % of one core at a "
              f"{hop:g} s hop | Pi 5, % of one core |", "|---|---|---|---|---|"]
    lines.append(f"| A. MACs / published MobileNetV2 rate (inference only, XNNPACK-like efficiency) | "
                 f"{est_a[0][0]:.0f}-{est_a[0][1]:.0f} | {est_a[1][0]:.0f}-{est_a[1][1]:.0f} | "
                 f"{est_a[0][0] / 10 / hop:.1f}-{est_a[0][1] / 10 / hop:.1f} | "
                 f"{est_a[1][0] / 10 / hop:.1f}-{est_a[1][1] / 10 / hop:.1f} |")
    mob = yard.get("mobilenet")
    r4, r6 = rows["4"], rows["6"]
    if mob and r4.ok:
        here = mob["cpu"]["median"]
        k4 = [ms / here for ms in pi4_1t]
        k5 = [k4[0] / PI5_OVER_PI4[1], k4[1] / PI5_OVER_PI4[0]]
        total = r4.data["total_cpu"]["median"]
        per_min = (r6.data.get("steady_cpu_s_per_min") or per_minute(r6, hop)) if r6.ok else per_minute(r4, hop)
        lines.append(
            f"| B. this machine's measured row 4 (features + inference, {total:.2f} ms CPU) x (Pi MobileNetV2 single-thread / "
            f"this machine's: {here:.1f} ms CPU here for the Keras MobileNetV2 1.0/224 converted to float32, "
            f"{mob['macs'] / 1e6:.0f} M MACs by the same count, so x{k4[0]:.1f}-{k4[1]:.1f} for a Pi 4, "
            f"x{k5[0]:.1f}-{k5[1]:.1f} for a Pi 5) | "
            f"{total * k4[0]:.0f}-{total * k4[1]:.0f} | {total * k5[0]:.0f}-{total * k5[1]:.0f} | "
            f"{per_min * k4[0] / 60 * 100:.1f}-{per_min * k4[1] / 60 * 100:.1f} (daemon) | "
            f"{per_min * k5[0] / 60 * 100:.1f}-{per_min * k5[1] / 60 * 100:.1f} (daemon) |")
    lines += ["",
              "Method A assumes the whole graph runs at MobileNetV2's MAC rate; the dynamic-range model quantizes "
              "activations at run time, and any op XNNPACK does not take (the seed architecture's fused LSTMs) runs on "
              "TFLite's builtin kernels, so A is optimistic. Method B carries over everything this machine measured (the "
              "numpy frontend, Python overhead, every kernel) and scales it by one published number, so it is the better guess; "
              "it assumes "
              "the x86 core and the Pi core differ on this model as they do on MobileNetV2. Both are estimates: measure on "
              "a Pi with `moodmic bench` before relying on them.", ""]
    return lines


def render(res: dict[str, Any], mach: dict[str, Any], command: str, aarch64: str) -> str:
    rows: dict[str, Any] = res["rows"]
    hop = res["hop"]
    r1 = rows["1"]
    base_min = per_minute(r1, hop)
    base_rss = r1.child.maxrss_mb if r1.ok else None
    base_imp = import_load(r1)[0]
    date = datetime.datetime.fromtimestamp(res["started"]).strftime("%Y-%m-%d %H:%M")
    pk = ", ".join(f"{k} {v}" for k, v in mach["packages"].items())
    L = ["# moodmic benchmarks", "",
         f"Produced by {res.get('producer', '`moodmic bench` (edge/bench.py)')}; rerun the command below to reproduce. "
         "Do not edit by hand.", "",
         f"- **Command:** `{command}`" + (" — **quick mode: a smoke test, the numbers mean little**" if res["quick"] else ""),
         f"- **Date:** {date} (local time); {res['finished'] - res['started']:.0f} s",
         f"- **Machine:** {mach['cpu']}, {mach['cores']} cores ({mach['usable_cores']} usable), "
         f"{mach['memory_mb'] / 1024:.1f} GiB RAM, {mach['machine']}, Linux {mach['kernel']}",
         f"- **Software:** Python {mach['python']}, moodmic {mach['moodmic']}"
         + (f" (git {mach['commit']})" if mach.get("commit") else "") + f"; {pk}",
         "- **Machine load** (1/5/15-min load average, shared with other work): "
         f"{'/'.join(f'{x:.2f}' for x in res['load_start'])} "
         f"at the start, {'/'.join(f'{x:.2f}' for x in res['load_end'])} at the end; per row below. CPU-time figures "
         "count only what the measured process used, so a busy machine moves them far less than wall time, which "
         "includes waiting for a core (not zero: shared caches and memory bandwidth still show, some 10-15% between "
         "runs at a load of 4-5 on 2 cores).",
         f"- **Audio:** {res['speech']['seconds']:.0f} s of real speech: {res['speech']['clips']} RAVDESS speech clips "
         f"interleaved across actors, concatenated into one 16 kHz WAV. Rows 1-5: {res['windows']} windows each "
         f"({res['warmup']} warm-up windows excluded) at the default hop of {hop:g} s; row 6 the whole file.",
         f"- **Model:** the seed architecture. Rows 1-3, 5: {res.get('model_source', '—')}; rows 4, 6: the shipped bundle "
         f"`{res['bundle']['name']}` ({res['bundle']['mode']}).",
         "- **Threads:** one everywhere: OMP/OpenBLAS/MKL/numexpr/numba = 1, TensorFlow intra/inter-op = 1, interpreter "
         "threads = 1. Each row is its own fresh process (rows 1-2: bench/rows.py, rows 3-5: edge/bench_rows.py, "
         "row 6: `moodmic run`), so no row inherits another's memory.",
         "- **Gate:** off (every window is classified: the worst case).", ""]
    L += ["## Results", "",
          "ms/window: **CPU time** of the row's process, median / p95 over the measured windows. CPU-s per minute: mean CPU "
          f"per window x {60 / hop:g} windows per minute (row 6: the daemon process's whole CPU time, start-up included, "
          "divided by the minutes of audio). Peak RSS: the process's peak resident set (VmHWM of its own address space). "
          "Import + model load: "
          "wall seconds from the row's first import to a loaded model (row 6: from process start to the daemon's "
          "`listening` log line). Ratios: row 1's value divided by the row's (higher is better).", "",
          "| # | stack | features ms/window | inference ms/window | total ms/window | CPU-s per min of audio | "
          "peak RSS | import + model load | model size | vs row 1: CPU per min / RSS / start |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        if not row.ok:
            L.append(f"| {row.key} | {row.title} | {row.skipped} | | | | | | | |")
            continue
        d = row.data
        pm = per_minute(row, hop)
        rss = row.child.maxrss_mb
        imp = import_load(row)[0]
        ratio = " / ".join(f"{a / b:.1f}x" if a and b else "—" for a, b in ((base_min, pm), (base_rss, rss), (base_imp, imp)))
        if row.key == "6":
            size = Path(res["bundle"]["path"], "model.tflite").stat().st_size
            L.append(f"| 6 | {row.title} | — | — | {d['cpu_ms_per_window']:.2f} (mean, all included) | **{pm:.3f}** | "
                     f"**{rss:.0f} MB** | {_f(imp, 2)} s | {_size(size)} | {ratio} |")
        else:
            L.append(f"| {row.key} | {row.title} | {_ms(d['feat_cpu'])} | {_ms(d['inf_cpu'])} | {_ms(d['total_cpu'])} | "
                     f"{pm:.3f} | {rss:.0f} MB | {imp:.2f} s | {_size(d['model_bytes'])} | {ratio} |")
    L += ["", "Wall time (the same windows; includes waiting for a core on a busy machine):", "",
          "| # | features ms/window | inference ms/window | total ms/window | wall-s per min of audio | import + load "
          "wall / CPU s | warm-up (excluded) | load avg at start | runtime |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        if not row.ok:
            continue
        d = row.data
        la = f"{row.child.load_before[0]:.2f}"
        if row.key == "6":
            L.append(f"| 6 | — | — | {d['wall_ms_per_window']:.2f} (mean) | {per_minute(row, hop, cpu=False):.3f} | "
                     f"{_f(d.get('start_to_listening_s'), 2)} (start to listening) | — | {la} | {d['windows']} windows in "
                     f"{row.child.wall_s:.1f} s: **{d['windows_per_s']:.1f} windows/s**, {d['realtime_factor']:.0f}x real time, "
                     f"{row.child.cpu_s:.2f} CPU-s |")
        else:
            L.append(f"| {row.key} | {_ms(d['feat_wall'])} | {_ms(d['inf_wall'])} | {_ms(d['total_wall'])} | "
                     f"{per_minute(row, hop, cpu=False):.3f} | {d['import_load_wall_s']:.2f} / {d['import_load_cpu_s']:.2f} | "
                     f"{d['warmup_wall_ms'] / 1000:.2f} s | {la} | "
                     f"{d.get('runtime', 'TensorFlow ' + mach['packages'].get('tensorflow', ''))} |")
    gate_on = res.get("daemon_gate_on", {})
    d6 = rows["6"].data if rows["6"].ok else {}
    if "steady_cpu_s_per_min" in d6:
        L += ["", f"Row 6 start-up: the same command on one window's worth of audio used {d6['startup_cpu_s']:.2f} CPU-s; "
              f"without it (a daemon that runs all day) the steady state is **{d6['steady_cpu_s_per_min']:.3f} CPU-s per "
              f"minute of audio** ({d6['steady_cpu_s_per_min'] / 60 * 100:.2f}% of one core of this machine)."]
    if gate_on.get("data"):
        g, c = gate_on["data"], gate_on["child"]
        L += ["", f"Row 6 with the default gate on (same audio): {g['inferred']} of {g['windows']} windows classified "
              f"({g['gated']} gated), {g['cpu_s_per_min']:.3f} CPU-s per minute of audio, {c.maxrss_mb:.0f} MB peak RSS, "
              f"{g['windows_per_s']:.1f} windows/s."]
    if res["notes"]:
        L += ["", "Notes: " + "; ".join(res["notes"]) + "."]
    L += [""] + acceptance(res) + budget(res) + pi_estimate(res)
    L += ["## aarch64 and armv7l (install and correctness, by emulation)", "",
          "`sudo bash scripts/aarch64_check.sh` (several minutes; too slow for every CI run, so this file keeps its last "
          "result). It debootstraps a Debian 12 arm64 root (cached in /var/cache/moodmic-aarch64), installs `.[edge]` "
          "there with pip in a fresh venv, compares `moodmic predict` on RAVDESS clips with x86, and checks what happens "
          "on armv7l.", "", aarch64.strip() if aarch64.strip() else "No result recorded yet.", ""]
    return "\n".join(L) + "\n"


def acceptance(res: dict[str, Any]) -> list[str]:
    rows, hop = res["rows"], res["hop"]
    r1, r4, r6 = rows["1"], rows["4"], rows["6"]
    L = ["## Acceptance (issue 7): the shipped path against row 1", ""]
    base, daemon = per_minute(r1, hop), per_minute(r6, hop)
    if base and daemon:
        x = base / daemon
        aims = ", ".join(f"{aim}x {'reached' if x >= aim else f'not reached ({x / aim:.0%} of it)'}" for aim in (20, 50))
        steady = r6.data.get("steady_cpu_s_per_min")
        extra = ""
        if steady:
            xs = base / steady
            extra = (f" Without the daemon's start-up (steady state, {steady:.3f} CPU-s per minute): {xs:.1f}x; aims "
                     + ", ".join(f"{aim}x {'reached' if xs >= aim else f'not reached ({xs / aim:.0%} of it)'}"
                                 for aim in (20, 50))
                     + ".")
        L.append(f"- CPU per minute of audio, daemon (row 6, start-up included) vs row 1: **{x:.1f}x less** — required "
                 f">= 10x: **{'PASS' if x >= 10 else 'FAIL'}**; aims: {aims}.{extra} (CPU time: a busy machine "
                 "moves it far less than wall time.)")
    else:
        L.append(f"- CPU per minute of audio vs row 1: not measured ({r1.skipped or r6.skipped or 'row failed'}).")
    if r6.ok:
        rss = r6.child.maxrss_mb
        aim = "50 MB aim reached" if rss <= 50 else f"50 MB aim missed by {rss - 50:.0f} MB"
        L.append(f"- Daemon peak RSS: **{rss:.0f} MB** — required <= 80 MB: **{'PASS' if rss <= 80 else 'FAIL'}**; {aim}.")
    wall, cpu = import_load(r4)
    if wall is not None and cpu is not None:
        verdict = "PASS" if wall <= 0.5 else ("FAIL" if cpu > 0.5 else "FAIL on wall time (CPU time passes: busy machine?)")
        extra = ""
        if r6.ok and r6.data.get("start_to_listening_s") is not None:
            extra = f"; the whole daemon, from process start to listening: {r6.data['start_to_listening_s']:.2f} s"
        L.append(f"- Import + model load, shipped path (row 4: edge modules, numpy, soundfile, the LiteRT runtime, bundle "
                 f"checks and interpreter): **{wall:.2f} s** wall ({cpu:.2f} s CPU) — required <= 0.5 s: **{verdict}**{extra}.")
    return L + [""]


# The default bundle's budget (issue 10): what the shipped model may cost, measured by rows 4 and 6.
BUDGET_BUNDLE_MB, BUDGET_MS_PER_WINDOW, BUDGET_RSS_MB = 12.0, 10.0, 100.0


def budget(res: dict[str, Any]) -> list[str]:
    rows = res["rows"]
    r4, r6 = rows["4"], rows["6"]
    bundle = Path(res["bundle"]["path"])
    mb = sum(f.stat().st_size for f in bundle.iterdir() if f.is_file()) / 1e6
    L = ["## Budget (issue 10): what the default bundle may cost", "",
         f"- Bundle folder (model, card, confusion matrix): **{mb:.2f} MB** — budget <= {BUDGET_BUNDLE_MB:g} MB: "
         f"**{'PASS' if mb <= BUDGET_BUNDLE_MB else 'FAIL'}**."]
    if r4.ok:
        ms = r4.data["total_cpu"]["p95"]
        L.append(f"- Frontend + inference per window, one core (row 4, CPU time, p95; no enhancement runs): **{ms:.2f} ms** "
                 f"— budget <= {BUDGET_MS_PER_WINDOW:g} ms: **{'PASS' if ms <= BUDGET_MS_PER_WINDOW else 'FAIL'}** "
                 f"({ms / BUDGET_MS_PER_WINDOW:.0%} of it).")
    if r6.ok:
        rss = r6.child.maxrss_mb
        L.append(f"- Daemon peak RSS (row 6): **{rss:.0f} MB** — budget <= {BUDGET_RSS_MB:g} MB: "
                 f"**{'PASS' if rss <= BUDGET_RSS_MB else 'FAIL'}**.")
    return L + [""]


def previous_aarch64(out: Path) -> str:
    """The aarch64 section of an existing report, kept when no newer result is given."""
    if not out.is_file():
        return ""
    text = out.read_text()
    marker = "## aarch64 and armv7l"
    if marker not in text:
        return ""
    section = text.split(marker, 1)[1]
    body = section.split("\n", 1)[1] if "\n" in section else ""
    # Drop the fixed introduction paragraph; keep the recorded result.
    parts = body.strip().split("\n\n", 1)
    return parts[1] if len(parts) == 2 else ""


def summary(res: dict[str, Any], mach: dict[str, Any]) -> dict[str, Any]:
    """The results as plain data (--json)."""
    hop = res["hop"]
    rows = {}
    for key, row in res["rows"].items():
        entry: dict[str, Any] = {"title": row.title, "ok": row.ok, "skipped": row.skipped}
        if row.ok:
            wall, cpu = import_load(row)
            entry.update(row.data)
            entry.update(peak_rss_mb=row.child.maxrss_mb, cpu_s_per_min=per_minute(row, hop), import_load_s=wall,
                         process_cpu_s=row.child.cpu_s, process_wall_s=row.child.wall_s, load_avg=row.child.load_before[0])
        rows[key] = entry
    r1, r6 = res["rows"]["1"], res["rows"]["6"]
    base, daemon = per_minute(r1, hop), per_minute(r6, hop)
    ratio = base / daemon if base and daemon else None
    return {"machine": mach, "hop_s": hop, "speech": res["speech"], "windows": res["windows"], "quick": res["quick"],
            "load_start": res["load_start"], "load_end": res["load_end"], "rows": rows,
            "cpu_per_min_ratio_row1_over_daemon": ratio, "yardstick": res.get("yardstick"), "notes": res["notes"]}


