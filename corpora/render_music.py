"""Music for the noise pools, rendered from public-domain scores: music21's corpus through FluidSynth.

Real recorded music with a usable license is scarce within the snapshot limit (corpora/README.md,
"Gaps"), so this renders scores instead: each piece's parts get General MIDI instruments drawn from
a fixed palette (piano, guitars, strings, organ, brass, reeds, bass; seeded per piece), a tempo
drawn from 0.8-1.3x, and FluidSynth plays it with the FluidR3 GM soundfont at 16 kHz. The output is a
plain folder of WAVs plus `rendered.json` (what each file is); `python -m corpora.prepare
rendered_music --mirror FOLDER` turns it into the usual FLAC + manifest form and pools.

Needs music21 (pip, BSD-3; its corpus of scores ships with it) and the `fluidsynth` command with
`/usr/share/sounds/sf2/FluidR3_GM.sf2` (apt: fluidsynth fluid-soundfont-gm; the soundfont is MIT).
Neither is a moodmic dependency: run it from a separate environment, e.g.

    python3 -m venv /tmp/venv-midi && /tmp/venv-midi/bin/pip install music21
    /tmp/venv-midi/bin/python corpora/render_music.py /work/music-rendered --pieces 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 16000
MAX_SECONDS = 120.0
MAX_MEASURES = 64
PIECE_TIMEOUT_S = 60  # a score music21 takes longer than this over is skipped
# Composers / collections of music21's corpus, in turn, so that styles mix (chorales, quartets,
# folk tunes, ragtime, madrigals, piano pieces).
COLLECTIONS = ("bach", "beethoven", "mozart", "haydn", "essenFolksong", "oneills1850", "ryansMammoth",
               "monteverdi", "schumann_robert", "schumann_clara", "joplin", "trecento", "chopin", "handel",
               "schubert", "corelli", "palestrina", "airdsAirs", "verdi", "weber")
# General MIDI programs (0-based) a part may get: pianos, guitars, strings, organ, brass, reeds, bass.
PALETTE = (0, 1, 2, 4, 24, 25, 26, 27, 32, 33, 40, 41, 42, 48, 49, 16, 19, 56, 57, 60, 61, 64, 65, 66, 68,
           71, 73)


def stable_rng(name: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"moodmic-music|{name}".encode()).digest()[:8], "big"))


def pick_pieces(n: int) -> list[Path]:
    from music21 import corpus
    by = {c: [] for c in COLLECTIONS}
    for p in corpus.getPaths():
        parts = Path(p).parts
        if "corpus" in parts:
            c = parts[parts.index("corpus") + 1]
            if c in by:
                by[c].append(Path(p))
    for c in by:  # a fixed order per collection, independent of the file system's
        by[c].sort(key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
    picked: list[Path] = []
    while len(picked) < n and any(by.values()):
        for c in COLLECTIONS:
            if by[c] and len(picked) < n:
                picked.append(by[c].pop(0))
    return picked


def render(path: Path, out: Path) -> dict | None:
    from music21 import converter, instrument, tempo
    name = f"{path.parent.name}_{path.stem}".replace(" ", "_")
    rng = stable_rng(name)
    score = converter.parse(str(path))
    if hasattr(score, "scores"):  # an opus (a book of tunes): its first score
        score = score.scores[0] if len(score.scores) else None
    if score is None or not hasattr(score, "parts") or len(score.parts) == 0:
        return None
    score = score.measures(1, MAX_MEASURES)  # the opening only: long movements take minutes to write as MIDI
    programs = []
    for part in score.parts:
        for old in part.recurse().getElementsByClass(instrument.Instrument):
            part.remove(old, recurse=True)
        prog = rng.choice(PALETTE)
        inst = instrument.Instrument()
        inst.midiProgram = prog
        part.insert(0, inst)
        programs.append(prog)
    factor = rng.uniform(0.8, 1.3)
    bpm = 60.0
    marks = list(score.recurse().getElementsByClass(tempo.MetronomeMark))
    if marks and marks[0].number:
        bpm = float(marks[0].number)
    for m in marks:
        m.activeSite.remove(m)
    score.parts[0].insert(0, tempo.MetronomeMark(number=max(40.0, min(200.0, bpm * factor))))
    import soundfile as sf
    with tempfile.TemporaryDirectory() as tmp:  # a piece cut short by the timeout leaves nothing behind
        mid, raw = Path(tmp) / "piece.mid", Path(tmp) / "piece.wav"
        score.write("midi", fp=str(mid))
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SAMPLE_RATE), "-F", str(raw),
                        str(SOUNDFONT), str(mid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with sf.SoundFile(raw) as f:  # only the first MAX_SECONDS are read: a score can declare hours
            sr = f.samplerate
            audio = f.read(int(MAX_SECONDS * sr), dtype="float32", always_2d=True).mean(axis=1)
    if audio.size < sr * 5 or float(abs(audio).max()) < 1e-3:
        return None
    wav = out / f"{name}.wav"
    sf.write(wav, audio, sr, subtype="PCM_16")
    score_path = path.parts[path.parts.index("corpus") + 1:]  # collection first, e.g. beethoven/opus18no4/...
    return {"file": wav.name, "collection": score_path[0], "score": "/".join(score_path), "programs": programs,
            "tempo_factor": round(factor, 3), "seconds": round(audio.size / sr, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--pieces", type=int, default=50)
    a = p.parse_args(argv)
    if not SOUNDFONT.is_file():
        print(f"render_music: {SOUNDFONT} is missing; install it: apt-get install fluidsynth fluid-soundfont-gm",
              file=sys.stderr)
        return 69
    import music21
    a.out.mkdir(parents=True, exist_ok=True)

    def too_long(*_):
        raise TimeoutError(f"over {PIECE_TIMEOUT_S} s")
    signal.signal(signal.SIGALRM, too_long)
    done = []
    for path in pick_pieces(a.pieces):
        signal.alarm(PIECE_TIMEOUT_S)
        try:
            r = render(path, a.out)
        except Exception as e:  # a score music21 cannot read or write as MIDI: skipped, said
            print(f"skipped {path.name}: {type(e).__name__}: {e}"[:200], file=sys.stderr)
            continue
        finally:
            signal.alarm(0)
        if r:
            done.append(r)
            print(f"{r['file']}: {r['seconds']} s, programs {r['programs']}", flush=True)
    (a.out / "rendered.json").write_text(json.dumps({
        "music21": music21.__version__, "soundfont": str(SOUNDFONT), "sample_rate": SAMPLE_RATE,
        "pieces": done}, indent=1) + "\n")
    print(f"{len(done)} pieces, {sum(r['seconds'] for r in done) / 60:.1f} min in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
