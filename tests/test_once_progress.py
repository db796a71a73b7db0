"""Progress of ``synchrod once --until-idle`` (cli.progress): the line's
figures (calls done out of the backlog, MiB/s, calls/s, time left) from an
injected clock; and the real command, its stderr a pseudo-terminal (one line
redrawn in place, ending at 100 %) or a pipe (a plain line per round that
took calls), stdout keeping the summary either way."""
from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import time

from conftest import REPO, SYNCHROD, call

from synchrod.cli.progress import Progress, eta, line
from synchrod.sync.cycle import CycleResult


def test_the_line_says_done_of_total_speed_and_time_left():
    text = line(done=1200, backlog=800, nbytes=300 << 20, elapsed=10.0)
    assert text == "1,200 of 2,000 calls (60 %), 30.0 MiB/s, 120 calls/s, 7 s left"
    assert line(0, None, 0, 0.0) == "0 calls, backlog not measured yet, - MiB/s"
    assert line(10, 0, 0, 1.0).startswith("10 of 10 calls (100 %)")
    assert line(10, 0, 0, 1.0).endswith("0 s left")
    assert line(0, 5, 0, 2.0).endswith("unknown left")


def test_eta_reads_as_people_say_it():
    assert [eta(s) for s in (None, 0, 42.4, 185, 7800)] == \
        ["unknown", "0 s", "42 s", "3 min 05 s", "2 h 10 min"]


def test_progress_sums_cycles_and_keeps_each_sources_last_backlog():
    now = [100.0]
    out = io.StringIO()
    p = Progress(out, live=False, clock=lambda: now[0])
    p.cycle("rec1", CycleResult("rec1", synchronized=40, not_used=5, erroneous=1, bytes=10 << 20), 100)
    p.cycle("rec2", CycleResult("rec2", synchronized=50, bytes=10 << 20), None)
    now[0] = 102.0
    p.round_ended()
    p.cycle("rec1", CycleResult("rec1", synchronized=100, bytes=20 << 20), 0)
    now[0] = 104.0
    p.round_ended()
    p.round_ended()                      # a round that took nothing prints nothing
    assert p.done == 196 and p.backlog == 0
    assert out.getvalue().splitlines() == [
        "round 1: 96 of 196 calls (48 %), 10.0 MiB/s, 48 calls/s, 2 s left",
        "round 2: 196 of 196 calls (100 %), 10.0 MiB/s, 49 calls/s, 0 s left"]


def test_live_redraws_in_place_and_ends_the_line():
    out = io.StringIO()
    now = [0.0]
    p = Progress(out, live=True, clock=lambda: now[0])
    now[0] = 1.0
    p.redraw()
    p.cycle("rec1", CycleResult("rec1", synchronized=10, bytes=1 << 20), 0)
    p.round_ended()
    p.close()
    text = out.getvalue()
    assert text.startswith("\r0 calls") and "\r10 of 10 calls (100 %)" in text
    assert text.endswith(" in 1.0 s\n") and "round" not in text


def _calls(env, n):
    env.raw["synchro"].update(calls_per_period=20)
    env.write_config()
    env.add_calls(0, [call(f"p{i:03d}", minutes_ago=60 + i) for i in range(n)])


def test_on_a_terminal_one_line_redrawn_to_100_percent(env):
    _calls(env, 60)
    master, slave = pty.openpty()
    proc = subprocess.Popen(SYNCHROD + ["once", "--until-idle", "-c", str(env.config_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:      # the command ended and closed the terminal
                break
            if not data:
                break
            chunks.append(data.decode(errors="replace"))
        elif proc.poll() is not None:
            break
    os.close(master)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, stdout
    tty = "".join(chunks)
    frames = [f for f in tty.split("\r") if f.strip()]
    assert len(frames) >= 2, tty
    assert re.search(r"60 of 60 calls \(100 %\), [\d.]+ MiB/s, [\d,]+ calls/s, 0 s left", tty), tty
    assert tty.rstrip().endswith(" s") and "round " not in tty
    assert stdout.splitlines()[0].split()[:2] == ["source", "state"], stdout


def test_not_on_a_terminal_a_plain_line_per_round(env):
    _calls(env, 50)
    proc = env.once("--until-idle")
    assert proc.returncode == 0, proc.stderr
    rounds = [ln for ln in proc.stderr.splitlines() if ln.startswith("round ")]
    assert len(rounds) >= 3, proc.stderr        # 20 calls a cycle: at least three rounds
    assert "\r" not in proc.stderr
    assert re.fullmatch(r"round \d+: 50 of 50 calls \(100 %\), [\d.]+ MiB/s, [\d,]+ calls/s, "
                        r"0 s left", rounds[-1]), rounds
    assert proc.stdout.splitlines()[0].split()[:2] == ["source", "state"]
