"""The sd_notify protocol: datagrams to $NOTIFY_SOCKET (no libsystemd needed)."""
from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + address[1:]) if address.startswith("@") else address
        self._sock = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> None:
        if self._sock is None:
            return
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            self._sock.sendto(msg.encode(), self.address)
        except OSError:
            pass  # systemd gone or socket full: never fatal to the daemon

    def ready(self, status: str = "") -> None:
        self.send(ready=1, **({"status": status} if status else {}))

    def reloading(self) -> None:
        self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> None:
        self.send(stopping=1)

    def watchdog(self) -> None:
        self.send(watchdog=1)

    def status(self, text: str) -> None:
        self.send(status=text)

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of $WATCHDOG_USEC in seconds, when the watchdog is on for us."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6
