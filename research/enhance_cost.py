"""What the WebRTC front end (edge.enhance) costs per second of audio, on real speech, one thread.

    python research/enhance_cost.py [--data DIR] [--seconds 60] [--repeats 5] [--out OUT]

Concatenates RAVDESS speech clips to --seconds of audio and times Enhancer.process over it (CPU time of this
process, so a busy machine moves it little; the median of --repeats), at the settings variant 35 trained with
and at the strongest ones. The daemon enhances each new hop of audio once, so at a 1-s hop this is the cost per
window on top of `moodmic bench`'s frontend + inference. Writes OUT/enhance_cost.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edge.audio import load_audio
from edge.data_path import data_dir
from edge.enhance import SAMPLE_RATE, Enhancer

SETTINGS = ((2, 5), (4, 31), (2, 0), (0, 5))  # (noise suppression, automatic gain dBFS)


def speech(root: Path, seconds: float) -> np.ndarray:
    from trainer.corpus import load_corpus

    parts, total = [], 0
    for path in sorted(c.path for c in load_corpus(root).usable if c.channel == "speech"):
        parts.append(load_audio(path, SAMPLE_RATE))
        total += len(parts[-1])
        if total >= seconds * SAMPLE_RATE:
            break
    return np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=data_dir(Path(__file__).resolve().parents[1]))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("research/results/enhance-cost"))
    args = ap.parse_args(argv)
    audio = speech(args.data, args.seconds)
    rows = []
    for ns, agc in SETTINGS:
        times = []
        for _ in range(args.repeats):
            enhancer = Enhancer(ns, agc)
            start = time.process_time()
            enhancer.process(audio)
            times.append(time.process_time() - start)
        ms = 1000 * float(np.median(times)) / (len(audio) / SAMPLE_RATE)
        rows.append({"noise_suppression": ns, "auto_gain_dbfs": agc, "cpu_ms_per_audio_s": round(ms, 3)})
        print(f"NS {ns}, AGC {agc}: {ms:.2f} ms CPU per second of audio", file=sys.stderr)
    machine = f"{platform.machine()}, {platform.processor() or platform.platform()}"
    load = round(os.getloadavg()[0], 2)
    report = {"seconds": len(audio) / SAMPLE_RATE, "repeats": args.repeats, "machine": machine, "load_avg_1min": load,
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "enhance_cost.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    lines = ["# The WebRTC front end's cost", "",
             f"{report['seconds']:.0f} s of RAVDESS speech through `edge.enhance.Enhancer`, CPU time, median of "
             f"{args.repeats}; {machine}, load average {load} at the end. At the daemon's 1-s hop, ms per second of "
             "audio = ms per window.", "",
             "| noise suppression | automatic gain (dBFS) | CPU ms per second of audio |", "|---|---|---|"]
    lines += [f"| {r['noise_suppression']} | {r['auto_gain_dbfs']} | {r['cpu_ms_per_audio_s']:.2f} |" for r in rows]
    (args.out / "enhance_cost.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
