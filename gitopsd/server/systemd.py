"""systemd integration: the sd_notify protocol, written out (no libsystemd needed).

A notification is one datagram of newline-separated ``KEY=VALUE`` lines sent to the
AF_UNIX socket named in ``$NOTIFY_SOCKET``; a leading ``@`` names an abstract socket
(replaced by a NUL byte). Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.

The daemon sends ``READY=1`` once the config is loaded and the API listens,
``STATUS=`` with app counts, ``RELOADING=1`` + ``MONOTONIC_USEC=`` then ``READY=1``
around a reload (``Type=notify-reload``), ``STOPPING=1`` on shutdown, and
``WATCHDOG=1`` from a task on the event loop every half ``$WATCHDOG_USEC``: a loop that
blocks stops pinging, and systemd restarts the service.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import anyio
import structlog

log = structlog.get_logger("gitopsd.server.systemd")


class SystemdNotifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; a no-op when it is not set.

    Args:
        env: The environment to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``
            from (default ``os.environ``).
    """

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if raw.startswith("@"):
            self.address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            self.address = raw
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None without a watchdog."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (keys upper-cased); True if the datagram was sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._warned:  # say it once: a watchdog would repeat it forever
                self._warned = True
                log.warning("sd_notify failed", error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1`` (with a ``STATUS=`` line when given)."""
        return self.notify(ready=1, status=status) if status else self.notify(ready=1)

    def status(self, text: str) -> bool:
        return self.notify(status=text)

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (required by systemd >= 253 for notify-reload)."""
        return self.notify(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> bool:
        return self.notify(stopping=1, status="stopping")

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    async def run_watchdog(self) -> None:
        """Ping ``WATCHDOG=1`` every half interval from the event loop, until cancelled."""
        interval = self.watchdog_interval
        if interval is None or not self.enabled:
            return
        while True:
            self.watchdog()
            await anyio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
