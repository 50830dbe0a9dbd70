"""How the daemon's gate treats speech in rooms and noise alone (issue [10]: far speech must not be gated).

    python research/gate_in_rooms.py --noise ../corpora --out research/results/gate-in-rooms [--clips 120]

Renders RAVDESS speech clips of actors 01-20 (validation pool: nothing here is chosen on test actors)
under clean, far, room and noise-*-10, and the validation pool's noise recordings alone at -70..-30 dBFS,
and counts the windows (windows.hop_seconds 1 s) the gate passes for several `gate.min_rms_dbfs` values.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from edge.audio import load_audio
from edge.config import GateSettings
from edge.data_path import data_dir
from edge.features import FeatureParams, Frontend, file_windows
from edge.gate import Gate
from edge.model import EmotionModel
from trainer.noisebank import NoiseBank
from trainer.rooms import CONDITIONS, Renderer, RoomBank, loudest_window_dbfs

LEVELS = (-55.0, -65.0, -75.0, -85.0)
CONDITION_NAMES = ("clean", "far", "room", "noise-voices-10", "noise-household-10", "noise-music-10", "noise-fan-10")


def setup(default_clips: int):
    """(args, feature params, frontend, decision hop in frames, corpus root, picked speech rows, noise bank,
    validation-pool renderer): what both gate probes start from (research/gate_grid.py imports it)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--noise", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=default_clips)
    a = ap.parse_args()
    params: FeatureParams = EmotionModel.load().bundle.features
    sr = params.sample_rate
    root = data_dir()
    rows = [r for r in csv.DictReader(open(root / "manifest.csv")) if "speech" in r["path"]]
    picked = [rows[i] for i in sorted(np.random.default_rng(0).choice(len(rows), a.clips, replace=False))]
    bank = NoiseBank.from_dirs([a.noise], sr)
    return a, params, Frontend(params), params.hop_frames(1.0), root, picked, bank, Renderer(bank, RoomBank(0, sr), 0, sr)


def main() -> None:
    a, params, fe, hop, root, picked, bank, renderer = setup(120)
    sr = params.sample_rate
    gates = {lv: Gate(GateSettings(min_rms_dbfs=lv), params) for lv in LEVELS}
    passed = {c: {lv: 0 for lv in LEVELS} for c in CONDITION_NAMES}
    total = dict.fromkeys(CONDITION_NAMES, 0)
    for row in picked:
        speech = load_audio(root / row["path"], sr)
        for c in CONDITION_NAMES:
            x, _ = renderer.render(speech, CONDITIONS[c], "validation", row["path"])
            windows = file_windows(fe, x, hop)
            total[c] += len(windows)
            for lv, g in gates.items():
                passed[c][lv] += sum(g.check(w).speech for w in windows)
    noise_only = {lv: [0, 0] for lv in LEVELS}
    for rec in [r for r in bank.recordings if r.pool == "validation" and r.kind != "voices"]:
        x = load_audio(rec.path, sr)[: 20 * sr]
        for level in (-70.0, -60.0, -50.0, -40.0, -30.0):
            y = x * 10 ** ((level - loudest_window_dbfs(x, sr)) / 20)
            for w in file_windows(fe, y.astype(np.float32), hop):
                for lv, g in gates.items():
                    noise_only[lv][0] += g.check(w).speech
                    noise_only[lv][1] += 1
    result = {"clips": a.clips, "levels": LEVELS,
              "speech_pass": {c: {str(lv): round(passed[c][lv] / total[c], 3) for lv in LEVELS} for c in CONDITION_NAMES},
              "noise_only_pass": {str(lv): round(p / n, 3) for lv, (p, n) in noise_only.items()},
              "noise_only_windows": noise_only[LEVELS[0]][1]}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gate_in_rooms.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| windows passing the gate | " + " | ".join(f"min_rms_dbfs {lv:g}" for lv in LEVELS) + " |",
             "|---|" + "---|" * len(LEVELS)]
    lines += [f"| speech, {c} | " + " | ".join(f"{result['speech_pass'][c][str(lv)]:.2f}" for lv in LEVELS) + " |"
              for c in CONDITION_NAMES]
    lines.append("| noise alone (household, music, fan; -70..-30 dBFS) | "
                 + " | ".join(f"{result['noise_only_pass'][str(lv)]:.2f}" for lv in LEVELS) + " |")
    (a.out / "gate_in_rooms.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
