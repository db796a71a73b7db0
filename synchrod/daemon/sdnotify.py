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
        """Whether $NOTIFY_SOCKET was set; without it every message is dropped."""
        return self._sock is not None

    def send(self, **fields: str | int) -> None:
        """One datagram of ``KEY=value`` lines (keys upper-cased); nothing without a socket,
        and never raises (systemd gone or the socket full)."""
        if self._sock is None:
            return
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            self._sock.sendto(msg.encode(), self.address)
        except OSError:
            pass  # systemd gone or socket full: never fatal to the daemon

    def ready(self, status: str = "") -> None:
        """READY=1 (with STATUS= when given): the start or a reload is done."""
        self.send(ready=1, **({"status": status} if status else {}))

    def reloading(self) -> None:
        """RELOADING=1 with MONOTONIC_USEC=now, as systemd's Type=notify-reload expects."""
        self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> None:
        """STOPPING=1: the graceful stop has begun."""
        self.send(stopping=1)

    def watchdog(self) -> None:
        """WATCHDOG=1: keeps systemd's watchdog from killing the daemon."""
        self.send(watchdog=1)

    def status(self, text: str) -> None:
        """STATUS=text: the line ``systemctl status`` shows."""
        self.send(status=text)

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of $WATCHDOG_USEC in seconds, when the watchdog is on for us."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6
