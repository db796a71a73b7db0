"""`synchrod run`: a real process, a real sd_notify socket, real signals."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from conftest import REPO, SYNCHROD, call


def _notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    return sock, path


def _messages(sock, until: str, timeout: float = 30) -> list[str]:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sock.recv(4096).decode()
        got.append(msg)
        if until in msg:
            return got
    raise AssertionError(f"no {until} in {got}")


def test_run_syncs_notifies_and_stops_on_sigterm(env, tmp_path):
    env.add_calls(0, [call(f"d{i}") for i in range(5)])
    env.write_config(logging={"level": "info", "format": "json"})
    sock, path = _notify_socket(tmp_path)
    proc = subprocess.Popen(SYNCHROD + ["run", "-c", str(env.config_path)], cwd=REPO,
                            env=dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000",
                                     WATCHDOG_PID=""),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert any("READY=1" in m for m in _messages(sock, "READY=1"))
        assert _messages(sock, "WATCHDOG=1")  # pinged at half of WATCHDOG_USEC
        deadline = time.monotonic() + 30
        while set(env.marks(0).values()) != {"S"}:
            assert time.monotonic() < deadline, env.marks(0)
            time.sleep(0.2)
        # a call recorded while the daemon runs is picked up after sleep_period
        env.add_calls(1, [call("late")])
        while env.marks(1).get("late") != "S":
            assert time.monotonic() < deadline + 30
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"event": "stopped"' in out
    assert '"event": "cycle"' in out and "password" not in out
    assert any("STOPPING=1" in m for m in _messages(sock, "STOPPING=1"))


def test_run_refuses_bad_config(env):
    env.raw["sources"][0]["mount_path"] = "relative/path"
    env.write_config()
    proc = subprocess.run(SYNCHROD + ["run", "-c", str(env.config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 78
    assert "sources[0].mount_path" in proc.stderr
