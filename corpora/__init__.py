"""Outside corpora for robustness work: real noise (household, music, voices, fan/hum) and more voices.

Nothing here is installed with moodmic and nothing here imports TensorFlow: `python -m corpora.prepare`
turns pinned snapshots of public repositories into the project's 16 kHz mono FLAC + manifest.csv form,
outside git. See corpora/README.md for every source, its commit and license, and the exact commands.
"""
