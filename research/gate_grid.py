"""Could other voice-check thresholds let speech in noise through and still keep noise out?

    python research/gate_grid.py --noise ../corpora --out research/results/gate-grid [--clips 80]

The gate's two window features (speech-band modulation in dB, spectral flatness; edge.gate) for RAVDESS
speech of actors 01-20 under the validation pool's noise at 20/10/5 dB and in the room condition, and
for the validation pool's non-voice noise alone at -70..-30 dBFS; then the share of windows passing for
a grid of (minimum modulation, flatness range). Validation pool only.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
from gate_in_rooms import setup  # research scripts run from research/ (first on sys.path)

from edge.audio import load_audio
from edge.config import GateSettings
from edge.features import file_windows
from edge.gate import Gate
from trainer.rooms import CONDITIONS, loudest_window_dbfs

SPEECH = ("clean", "room", *(f"noise-{k}-{s}" for k in ("household", "music", "voices", "fan") for s in (20, 10, 5)))
MODS = (4.0, 6.0, 8.0, 10.0)
FLATS = ((0.03, 0.6), (0.02, 0.7), (0.01, 0.8))


def main() -> None:
    a, params, fe, hop, root, picked, bank, renderer = setup(80)
    sr = params.sample_rate
    gate = Gate(GateSettings(), params)
    feats: dict[str, list[tuple[float, float]]] = {c: [] for c in SPEECH}
    for row in picked:
        speech = load_audio(root / row["path"], sr)
        for c in SPEECH:
            x, _ = renderer.render(speech, CONDITIONS[c], "validation", row["path"])
            feats[c] += [gate.voice_features(w) for w in file_windows(fe, x, hop)]
    feats["noise alone"] = []
    for rec in [r for r in bank.recordings if r.pool == "validation" and r.kind != "voices"]:
        x = load_audio(rec.path, sr)[: 20 * sr]
        for level in (-70.0, -50.0, -30.0):
            y = (x * 10 ** ((level - loudest_window_dbfs(x, sr)) / 20)).astype(np.float32)
            feats["noise alone"] += [gate.voice_features(w) for w in file_windows(fe, y, hop)]
    table = {}
    for mod, (lo, hi) in itertools.product(MODS, FLATS):
        key = f"mod>={mod:g} flat {lo:g}-{hi:g}"
        table[key] = {c: round(float(np.mean([m >= mod and lo <= f <= hi for m, f in v])), 3) for c, v in feats.items()}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gate_grid.json").write_text(json.dumps({"clips": a.clips, "pass": table}, indent=1) + "\n")
    cols = ["clean", "room", "noise-household-10", "noise-music-10", "noise-voices-10", "noise-fan-10",
            "noise-household-5", "noise alone"]
    lines = ["| thresholds | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {k} | " + " | ".join(f"{v[c]:.2f}" for c in cols) + " |" for k, v in table.items()]
    (a.out / "gate_grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
