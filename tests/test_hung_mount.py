"""A hung mount for real: rec1's mount path is a kernel FUSE mount
(synchrod.testing.slowfs, 1 ms a request) whose reads are made to block,
not an injected fault. While they block: rec2 keeps syncing (calls
recorded during the hang included), the systemd watchdog keeps being
pinged, rec1 is reported stalled (log and `synchrod status`) and nothing is
marked erroneous; when reads return rec1 resumes and catches up. Blocked
again, SIGTERM still ends the daemon within stop_timeout, and the cycle it
abandoned is repaired by the next run."""
from __future__ import annotations

import os
import signal
import time

import pytest
from _daemon import Daemon, WaitTimeout, status_json, wait_until
from conftest import call
from invariants import assert_consistent
from test_faults import (IO_TIMEOUT, STOP_TIMEOUT, _assert_no_erroneous, _by_name, _configure,
                         _journaled, _wait_synced)

from synchrod.testing import slowfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="mounting FUSE needs root and /dev/fuse")


def _stalled_in_status(env, source: str, want: bool) -> dict:
    last: dict = {}

    def reported():
        last.update(status_json(env))
        return _by_name(last).get(source, {}).get("stalled") is want
    try:
        wait_until(reported, 15, f"status reporting {source} stalled={want}", interval=0.5)
    except WaitTimeout as exc:
        raise AssertionError(f"{exc}: {last}") from None
    return dict(last)


@pytest.mark.slow
def test_reads_that_never_return_on_a_real_mount(env, tmp_path):
    hang = tmp_path / "hang-reads"
    fuse_mount = tmp_path / "nfs1"
    with slowfs.mounted(env.mounts[0], fuse_mount, delay_ms=1, hang_file=hang):
        env.raw["sources"][0]["mount_path"] = str(fuse_mount)   # the files live under env.mounts[0]
        _configure(env, io_timeout=IO_TIMEOUT, stop_timeout=STOP_TIMEOUT)
        rec1, rec2 = [f"a{i}" for i in range(3)], [f"b{i}" for i in range(2)]
        env.add_calls(1, [call(s, minutes_ago=90 - i) for i, s in enumerate(rec2)])
        hang.touch()
        env.add_calls(0, [call(s, minutes_ago=90 - i) for i, s in enumerate(rec1)])

        with Daemon(env, notify=True, watchdog_usec=1_000_000) as d:
            d.wait_notify("READY=1")
            _wait_synced(env, 1, rec2, daemon=d)
            wait_until(lambda: _journaled(env, "rec1") > 0, 20, "rec1 in its media phase")
            hung_at = time.monotonic()
            d.wait_event("source_stalled", IO_TIMEOUT + 8, source="rec1")
            status = _stalled_in_status(env, "rec1", True)
            assert _by_name(status)["rec2"].get("stalled") is False, status

            more = ["b2", "b3"]      # the other source keeps syncing
            env.add_calls(1, [call(s, minutes_ago=30) for s in more])
            _wait_synced(env, 1, rec2 + more, daemon=d)
            wait_until(lambda: time.monotonic() - hung_at >= 4, 10, "4 s of hang", interval=0.2)
            pings = d.notified("WATCHDOG=1", since=hung_at)
            gaps = [b - a for a, b in zip([hung_at] + pings, pings + [time.monotonic()])]
            assert len(pings) >= 6 and max(gaps) < 1.0, f"watchdog gaps {gaps}"
            assert d.alive(), d.tail()
            _assert_no_erroneous(env, 0, 1)
            assert all(m is None for m in env.marks(0).values()), env.marks(0)

            hang.unlink()            # the reads return: rec1 resumes and catches up
            _wait_synced(env, 0, rec1, daemon=d)
            d.wait_event("source_resumed", 15, source="rec1")
            _stalled_in_status(env, "rec1", False)

            late = [f"c{i}" for i in range(2)]   # blocked again, then SIGTERM
            hang.touch()
            stalls = len(d.find("source_stalled", source="rec1"))
            env.add_calls(0, [call(s, minutes_ago=20) for s in late])
            d._wait(lambda: len(d.find("source_stalled", source="rec1")) > stalls,
                    IO_TIMEOUT + 15, "rec1 stalled again", 0.1)
            t0 = time.monotonic()
            d.signal(signal.SIGTERM)
            rc = d.wait_exit(STOP_TIMEOUT + 10)
            elapsed = time.monotonic() - t0
            assert rc == 0, (rc, elapsed, d.tail())
            assert elapsed <= STOP_TIMEOUT + 5, f"stopped {elapsed:.1f} s after SIGTERM"
            assert d.notified("STOPPING=1"), d.datagrams
        hang.unlink()
        _assert_no_erroneous(env, 0, 1)
        env.once("--until-idle", check_rc=0)     # the abandoned cycle repaired
        assert set(env.marks(0).values()) == {"S"} and set(env.marks(1).values()) == {"S"}
        assert_consistent(env, set(rec1) | set(late) | set(rec2) | set(more))
    print(f"\nSIGTERM with rec1's reads hung in the kernel: exited in {elapsed:.2f} s "
          f"(stop_timeout {STOP_TIMEOUT} s)")
