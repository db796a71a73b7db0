"""A real `synchrod run` process for the fault tests: its JSON log lines
(read continuously by a thread), a real sd_notify datagram socket (every
datagram kept with the time it arrived), signals, and a guaranteed kill when
the test is over, whatever happened."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from conftest import REPO, SYNCHROD


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate, timeout: float, what: str = "condition", interval: float = 0.1):
    """Polls ``predicate`` until it returns something truthy; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """``synchrod run -c <env.config_path>`` with ``extra_env``; a context manager."""

    def __init__(self, env, *, extra_env: dict[str, str] | None = None, notify: bool = False,
                 watchdog_usec: int | None = None):
        self.env = env
        self.lines: list[str] = []          # stdout (structlog JSON lines)
        self.err: list[str] = []            # stderr
        self.events: list[dict] = []        # stdout lines that parsed as JSON objects
        self.datagrams: list[tuple[float, str]] = []  # (monotonic time, sd_notify message)
        self._lock = threading.Lock()
        self._sockdir = None
        self._sock = None
        child_env = dict(os.environ)
        for key in [k for k in child_env if k.startswith(("SYNCHROD_FAULT", "NOTIFY_", "WATCHDOG_"))]:
            del child_env[key]
        if notify:
            # socket paths are limited to ~107 bytes: keep it short
            self._sockdir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
            path = os.path.join(self._sockdir, "notify.sock")
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(path)
            self._sock.settimeout(0.2)
            child_env["NOTIFY_SOCKET"] = path
            if watchdog_usec:
                child_env["WATCHDOG_USEC"] = str(watchdog_usec)
                child_env["WATCHDOG_PID"] = ""
        child_env.update(extra_env or {})
        self.proc = subprocess.Popen(SYNCHROD + ["run", "-c", str(env.config_path)], cwd=REPO,
                                     env=child_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        if self._sock is not None:
            self._threads.append(threading.Thread(target=self._read_notify, daemon=True))
        self._closing = False
        for t in self._threads:
            t.start()

    # --- readers ---------------------------------------------------------------------
    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._lock:
                self.lines.append(line)
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    self.events.append(obj)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            with self._lock:
                self.err.append(line.rstrip("\n"))

    def _read_notify(self) -> None:
        while not self._closing:
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.datagrams.append((time.monotonic(), data.decode(errors="replace")))

    # --- queries -----------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def find(self, event: str, **fields) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e.get("event") == event
                    and all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, event: str, timeout: float, **fields) -> dict:
        def found():
            hits = self.find(event, **fields)
            if hits:
                return hits[0]
            assert self.alive(), f"daemon exited ({self.proc.returncode}) waiting for {event}\n{self.tail()}"
            return None
        try:
            return wait_until(found, timeout, f"log event {event} {fields}")
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def notified(self, text: str, since: float = 0.0) -> list[float]:
        """Arrival times of the datagrams containing ``text`` (after ``since``)."""
        with self._lock:
            return [t for t, msg in self.datagrams if text in msg and t >= since]

    def wait_notify(self, text: str, timeout: float = 30) -> float:
        return wait_until(lambda: (self.notified(text) or [None])[0], timeout,
                          f"sd_notify {text}", interval=0.05)

    def tail(self, n: int = 40) -> str:
        with self._lock:
            return ("--- stdout ---\n" + "\n".join(self.lines[-n:]) +
                    "\n--- stderr ---\n" + "\n".join(self.err[-n:]))

    # --- control -------------------------------------------------------------------------
    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """The exit status; fails (the process is then killed on close) when it
        does not exit within ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running {timeout:.1f} s later\n{self.tail()}") from None

    def stop(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self._closing = True
        for t in self._threads:
            t.join(5)
        if self._sock is not None:
            self._sock.close()
            shutil.rmtree(self._sockdir, ignore_errors=True)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def status_json(env, timeout: float = 30) -> dict:
    """``synchrod status --json`` as a separate process."""
    proc = subprocess.run(SYNCHROD + ["status", "--json", "-c", str(env.config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith(("SYNCHROD_FAULT", "NOTIFY_", "WATCHDOG_"))})
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    return json.loads(proc.stdout)


def hang_fault(tmp_path: Path, source: str = "rec1", skip: int = 0) -> tuple[Path, dict[str, str]]:
    """Environment that makes every media read of ``source`` block until the
    returned release file exists."""
    release = tmp_path / f"release-{source}"
    return release, {"SYNCHROD_FAULT": "source_read", "SYNCHROD_FAULT_ACTION": "hang",
                     "SYNCHROD_FAULT_RELEASE": str(release), "SYNCHROD_FAULT_SOURCE": source,
                     "SYNCHROD_FAULT_SKIP": str(skip)}
