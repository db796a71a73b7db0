"""Real synchrod processes for the tests that drive `synchrod run` from the
outside (faults, HA, retry and run-now, the runtime, the rc script).

- :class:`Daemon`: one `synchrod run -c CONFIG` process. Its stdout and stderr
  are read continuously by threads (every structlog JSON line parsed once), an
  optional real sd_notify datagram socket keeps every datagram with the time it
  arrived, signals, and a guaranteed kill on :meth:`Daemon.close` (a context
  manager, or the :func:`daemons` fixture: every daemon it started is killed
  when the test ends, whatever happened).
- :func:`synchrod` / :func:`status_json`: one-shot commands as separate processes.
- :func:`wait_until`, :func:`child_env`, :func:`hang_fault`.
"""
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

import pytest

from conftest import REPO, SYNCHROD

#: variables of the test process a child must not inherit (fault injection, systemd)
_PRIVATE = ("SYNCHROD_FAULT", "NOTIFY_", "WATCHDOG_")


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate, timeout: float, what: str = "condition", interval: float = 0.1):
    """Polls ``predicate`` until it returns something truthy and returns that;
    raises :class:`WaitTimeout` (an ``AssertionError``) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a synchrod child: ours without fault and systemd
    variables, unbuffered output, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def synchrod(env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``synchrod ARGS -c CONFIG`` as a separate process."""
    return subprocess.run(SYNCHROD + [*args, "-c", str(env.config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=child_env(),
                          stdin=subprocess.DEVNULL)


def status_json(env, timeout: float = 60) -> dict:
    """``synchrod status --json``; fails unless it exits 0."""
    proc = synchrod(env, "status", "--json", timeout=timeout)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    return json.loads(proc.stdout)


def hang_fault(tmp_path: Path, source: str = "rec1", skip: int = 0) -> tuple[Path, dict[str, str]]:
    """Environment that makes every media read of ``source`` block until the
    returned release file exists."""
    release = tmp_path / f"release-{source}"
    return release, {"SYNCHROD_FAULT": "source_read", "SYNCHROD_FAULT_ACTION": "hang",
                     "SYNCHROD_FAULT_RELEASE": str(release), "SYNCHROD_FAULT_SOURCE": source,
                     "SYNCHROD_FAULT_SKIP": str(skip)}


class Daemon:
    """``synchrod run -c <env.config_path>`` with ``extra_env``; a context manager.

    ``notify``: a real sd_notify socket (``NOTIFY_SOCKET``), with
    ``WATCHDOG_USEC`` when ``watchdog_usec`` is given."""

    def __init__(self, env, label: str = "daemon", *, extra_env: dict[str, str] | None = None,
                 notify: bool = False, watchdog_usec: int | None = None):
        self.env = env
        self.label = label
        self.lines: list[str] = []          # stdout (structlog JSON lines)
        self.err: list[str] = []            # stderr
        self._events: list[dict] = []       # stdout lines that parsed as JSON objects
        self.datagrams: list[tuple[float, str]] = []  # (monotonic time, sd_notify message)
        self._lock = threading.Lock()
        self._closing = False
        self._sockdir = None
        self._sock = None
        extra = {}
        if notify:
            # socket paths are limited to ~107 bytes: keep it short
            self._sockdir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
            path = os.path.join(self._sockdir, "notify.sock")
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(path)
            self._sock.settimeout(0.2)
            extra["NOTIFY_SOCKET"] = path
            if watchdog_usec:
                extra.update(WATCHDOG_USEC=str(watchdog_usec), WATCHDOG_PID="")
        extra.update(extra_env or {})
        self.proc = subprocess.Popen(SYNCHROD + ["run", "-c", str(env.config_path)], cwd=REPO,
                                     env=child_env(extra), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", bufsize=1)
        self.pid = self.proc.pid
        self.name = f"{socket.gethostname()}:{self.pid}"   # the daemon's "host:pid"
        self._pipes = [threading.Thread(target=self._read_stdout, daemon=True),
                       threading.Thread(target=self._read_stderr, daemon=True)]
        self._threads = list(self._pipes)
        if self._sock is not None:
            self._threads.append(threading.Thread(target=self._read_notify, daemon=True))
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
                    self._events.append(obj)

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

    def _settle(self) -> None:
        """Once the process is gone: lets the readers take in what it left."""
        for t in self._pipes:
            t.join(5)
        if self._sock is not None:
            time.sleep(0.3)

    # --- queries -----------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def events(self, name: str | None = None) -> list[dict]:
        """The JSON log events so far (those named ``name``)."""
        with self._lock:
            return [e for e in self._events if name is None or e.get("event") == name]

    def find(self, event: str, **fields) -> list[dict]:
        return [e for e in self.events(event) if all(e.get(k) == v for k, v in fields.items())]

    def claimed(self) -> set[str]:
        """Every source this daemon logged as claimed."""
        return {s for e in self.find("sources_claimed") for s in e.get("sources", [])}

    @property
    def messages(self) -> list[str]:
        """The sd_notify datagrams received so far, in order."""
        with self._lock:
            return [msg for _, msg in self.datagrams]

    def notified(self, text: str, since: float = 0.0) -> list[float]:
        """Arrival times of the datagrams containing ``text`` (after ``since``)."""
        with self._lock:
            return [t for t, msg in self.datagrams if text in msg and t >= since]

    def log_text(self) -> str:
        """Everything the daemon wrote so far, stdout then stderr."""
        with self._lock:
            return "\n".join(self.lines + self.err)

    def tail(self, n: int = 40) -> str:
        with self._lock:
            return (f"--- {self.label} stdout ---\n" + "\n".join(self.lines[-n:]) +
                    f"\n--- {self.label} stderr ---\n" + "\n".join(self.err[-n:]))

    # --- waits -------------------------------------------------------------------------
    def _wait(self, lookup, timeout: float, what: str, interval: float, context=None):
        """``wait_until(lookup)`` that fails at once, with the log, when the daemon exits."""
        def probe():
            hit = lookup()
            if hit or self.alive():
                return hit
            self._settle()
            hit = lookup()
            if hit:
                return hit
            raise AssertionError(f"{self.label} exited ({self.proc.returncode}) waiting for"
                                 f" {what}\n{self.tail()}")
        try:
            return wait_until(probe, timeout, f"{self.label}: {what}", interval)
        except WaitTimeout as exc:
            more = f"\n{context()}" if context else ""
            raise WaitTimeout(f"{exc}{more}\n{self.tail()}") from None

    def wait_event(self, event: str, timeout: float = 30, **fields) -> dict:
        """The first log event ``event`` with ``fields``."""
        return self._wait(lambda: (self.find(event, **fields) or [None])[0], timeout,
                          f"log event {event} {fields}", 0.1)

    def wait_notify(self, text: str, timeout: float = 30, after: int = 0) -> str:
        """The first datagram containing ``text`` among those from index ``after`` on."""
        def lookup():
            return next((m for m in self.messages[after:] if text in m), None)
        return self._wait(lookup, timeout, f"sd_notify {text!r}", 0.05,
                          context=lambda: f"datagrams: {self.messages[after:]}")

    # --- control -------------------------------------------------------------------------
    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """The exit status; fails (the process is then killed on close) when it
        does not exit within ``timeout``."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} still running {timeout:g} s later\n"
                                 f"{self.tail()}") from None
        self._settle()
        return rc

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit status (fails if still running after ``timeout``)."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(15)

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


@pytest.fixture
def daemons(env):
    """``start(label="daemon", extra_env=..., notify=..., watchdog_usec=...)``
    starts a :class:`Daemon` on env's configuration; all of them are killed
    (SIGKILL) at the end of the test if still alive."""
    started: list[Daemon] = []

    def start(label: str = "daemon", **kw) -> Daemon:
        d = Daemon(env, label, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
