"""A dependency-free progress bar for the slow loops outside Keras (feature caching, scoring)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TextIO, TypeVar

T = TypeVar("T")
WIDTH = 30


def progress(items: Iterable[T], label: str, total: int | None = None, stream: TextIO | None = None) -> Iterator[T]:
    """Yield items while drawing a bar: redrawn in place on a terminal, a line per quarter in a log."""
    stream = stream or sys.stderr
    total = total if total is not None else len(items) if isinstance(items, Sized) else 0
    tty = stream.isatty()
    start, last_quarter = time.monotonic(), 0
    for i, item in enumerate(items, start=1):
        yield item
        quarter = 4 * i // max(total, 1)
        if not tty and quarter == last_quarter:
            continue
        last_quarter = quarter
        elapsed = time.monotonic() - start
        eta = elapsed / i * max(total - i, 0)
        done = min(WIDTH, WIDTH * i // max(total, 1))
        text = f"{label} {i}/{total} [{'=' * done}{'.' * (WIDTH - done)}] {elapsed:.0f}s, eta {eta:.0f}s"
        stream.write(("\r" + text + ("\n" if i == total else "")) if tty else text + "\n")
        stream.flush()
