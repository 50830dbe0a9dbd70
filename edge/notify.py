"""systemd's notify protocol: READY, STATUS, the watchdog and STOPPING (silent outside systemd)."""

from __future__ import annotations

import os
import time


class Notifier:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._notifier = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        # sdnotify does not read WATCHDOG_USEC: we do, and ping every quarter of it (at least every half).
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.ping_every = int(usec) / 4e6 if usec.isdigit() and mine else None
        self._last_ping = clock()
        self.ready_sent = False

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")
        self.ready_sent = True

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def progress(self) -> None:
        """Call after a window was consumed: pings the watchdog when due, so it never fires while
        windows flow and always fires when the pipeline stalls."""
        if self.ping_every is not None and self._clock() - self._last_ping >= self.ping_every:
            self._send("WATCHDOG=1")
            self._last_ping = self._clock()

    def stopping(self) -> None:
        self._send("STOPPING=1")
