"""Where the RAVDESS corpus is found: the one rule the trainer, the benchmarks, the soak and the tests share."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "MOODMIC_DATA"
# The workspace layout: the corpus lives beside the checkout, never inside it.
RELATIVE_DATA = Path("..") / "shared" / "data" / "ravdess"
DATA_HELP = f"${DATA_ENV}, else {RELATIVE_DATA} relative to the current directory"


def data_dir(base: Path | None = None) -> Path:
    """$MOODMIC_DATA if set, else ../shared/data/ravdess relative to `base` (default: the current directory).

    The result may not exist; callers say what is missing and how to point at the corpus."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return ((base or Path.cwd()) / RELATIVE_DATA).resolve()
