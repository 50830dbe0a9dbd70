"""Background threads must not die quietly: their exceptions are recorded, and the main loop checks that
each thread it relies on is alive (InternalFault, exit 70: systemd restarts the service).

Python prints a dying thread's traceback and carries on; paho's network thread and our delivery thread
dying that way left a daemon that ran on, never published and said nothing."""

from __future__ import annotations

import threading

from .errors import InternalFault

_deaths: dict[int, str] = {}  # thread ident -> "ExceptionType: message"
_previous_hook = threading.excepthook


def _hook(args: threading.ExceptHookArgs) -> None:
    if args.thread is not None and args.thread.ident is not None and args.exc_type is not SystemExit:
        _deaths[args.thread.ident] = f"{args.exc_type.__name__}: {args.exc_value}"[:300]
    _previous_hook(args)  # the traceback still goes to the journal


def install() -> None:
    """Record every uncaught thread exception from now on (idempotent)."""
    threading.excepthook = _hook


def check_alive(thread: threading.Thread | None, what: str) -> None:
    """Raise InternalFault if `thread` was started and has died."""
    if thread is None or thread.ident is None or thread.is_alive():
        return
    cause = _deaths.get(thread.ident, "no exception recorded")
    raise InternalFault(f"the {what} died ({cause}); moodmic exits so that systemd restarts it")
