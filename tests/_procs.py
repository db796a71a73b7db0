"""Real synchrod processes for the HA and retry tests: `synchrod run` daemons
whose stdout/stderr go to files (their structlog JSON lines are parsed from
there), one-shot commands (`status --json`, `retry`, `run-now`) as separate
processes, and a fixture that kills every daemon still alive when the test
ends, whatever happened."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, SYNCHROD


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SYNCHROD_FAULT", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Polls ``predicate`` until it returns something truthy; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


class RunningDaemon:
    """``synchrod run -c CONFIG``; stdout and stderr in files below ``logdir``."""

    def __init__(self, env, label: str, logdir: Path, extra_env: dict[str, str] | None = None):
        self.label = label
        self.out_path = logdir / f"{label}.out"
        self.err_path = logdir / f"{label}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(SYNCHROD + ["run", "-c", str(env.config_path)], cwd=REPO,
                                     env=child_env(extra_env), stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.name = f"{socket.gethostname()}:{self.pid}"   # the daemon's "host:pid"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def events(self) -> list[dict]:
        out = []
        for line in self.out_path.read_text(errors="replace").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def find(self, event: str, **fields) -> list[dict]:
        return [e for e in self.events() if e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())]

    def claimed(self) -> set[str]:
        """Every source this daemon logged as claimed."""
        return {s for e in self.find("sources_claimed") for s in e.get("sources", [])}

    def wait_event(self, event: str, timeout: float, **fields) -> dict:
        def found():
            hits = self.find(event, **fields)
            if hits:
                return hits[0]
            assert self.alive(), f"{self.label} exited ({self.proc.returncode})\n{self.tail()}"
            return None
        try:
            return wait_until(found, timeout, f"{self.label}: log event {event} {fields}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def tail(self, n: int = 30) -> str:
        def last(p: Path) -> str:
            try:
                return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
            except OSError:
                return ""
        return (f"--- {self.label} stdout ---\n{last(self.out_path)}\n"
                f"--- {self.label} stderr ---\n{last(self.err_path)}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)

    def stop(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} still running {timeout} s after SIGTERM\n"
                                 f"{self.tail()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self._out.close()
        self._err.close()


@pytest.fixture
def daemons(env, tmp_path):
    """``start(label)`` starts a daemon on env's configuration; all of them are
    killed (SIGKILL) at the end of the test if still alive."""
    started: list[RunningDaemon] = []
    logdir = tmp_path / "logs"
    logdir.mkdir()

    def start(label: str, extra_env: dict[str, str] | None = None) -> RunningDaemon:
        d = RunningDaemon(env, label, logdir, extra_env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def synchrod(env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``synchrod ARGS -c CONFIG`` as a separate process."""
    return subprocess.run(SYNCHROD + [*args, "-c", str(env.config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=child_env(),
                          stdin=subprocess.DEVNULL)


def status_json(env) -> dict:
    proc = synchrod(env, "status", "--json")
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    return json.loads(proc.stdout)


def owners(report: dict) -> dict[str, str | None]:
    return {s["sysname"]: s["owner"] for s in report["sources"]}


def published_views(env) -> dict[str, dict]:
    """Each daemon's own published view of the sources (synchrod.daemons), by name."""
    rows = env.target("SELECT name, sources FROM synchrod.daemons")
    return {name: (json.loads(src) if isinstance(src, str) else src) for name, src in rows}
