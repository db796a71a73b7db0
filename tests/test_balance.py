"""SPEC §11 with real processes: three `synchrod run` daemons on nine
sources own three each (rendezvous hashing with bounded loads); SIGKILL
one (the holder of the archive duty) and the survivors own all nine within
one sleep period, at most five each, and take its duty over; start a third
daemon again and the sources go back to three each. Throughout, a sampler
reads every daemon's published ownership and the advisory locks: no source
ever has two owners; every call is synchronized exactly once, and no two
cycles of one source ever overlap."""
from __future__ import annotations

import collections
import math
import threading
import time

import psycopg
import pytest
from _daemon import Daemon, status_json, wait_until
from conftest import call
from invariants import assert_consistent
from test_ha import _all_marked, _live_owned, _runs_never_overlap

from synchrod.replay.daemons import OWNER_CLASS
from synchrod.testing.recorders import FileSpec

N = 9
PERIOD = 2


def _small(sid: str, minutes_ago: int = 60):
    return call(sid, minutes_ago=minutes_ago,
                file_specs=[FileSpec("AUDIO", f"/calls/{sid}/0.wav", size=2048, content="bytes")])


def _owners(env) -> dict[str, str | None]:
    return {s["sysname"]: s["owner"] for s in status_json(env)["sources"]}


def _balanced(env, names: set[str]) -> dict[str, str] | None:
    """The owners once every source has one of ``names``, none above the bound."""
    own = _owners(env)
    if set(own.values()) - names or None in own.values() or len(own) != N:
        return None
    loads = collections.Counter(own.values())
    return own if set(loads) == names and max(loads.values()) <= math.ceil(N / len(names)) else None


class Sampler(threading.Thread):
    """Reads, every 50 ms, which live daemons' published rows say they own
    each source, and who holds each source's advisory lock; any source with
    two owners is kept in ``doubles``."""

    def __init__(self, env):
        super().__init__(daemon=True)
        self.env, self.doubles, self.samples = env, [], 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self._sample()
            except psycopg.errors.UndefinedTable:   # before the first daemon made the schema
                pass
            time.sleep(0.05)

    def _sample(self) -> None:
        """One sample: owners as published, and advisory locks granted twice."""
        published = _live_owned(self.env)
        locks = self.env.target(
            "SELECT objid, count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid = %s::oid AND objsubid = 2 AND granted GROUP BY objid"
            " HAVING count(*) > 1", OWNER_CLASS)
        for src, names in published.items():
            if len(names) > 1:
                self.doubles.append(("published", src, names))
        self.doubles += [("lock", objid, n) for objid, n in locks]
        self.samples += 1


def _start(env, label, started) -> Daemon:
    d = Daemon(env, label)
    started.append(d)
    return d


def _add(env, prefix: str, per_source: int) -> set[str]:
    sids = set()
    for i in range(N):
        batch = [f"{prefix}-{i}-{k}" for k in range(per_source)]
        env.add_calls(i, [_small(s) for s in batch])
        sids |= set(batch)
    return sids


@pytest.mark.slow
def test_three_daemons_nine_sources_kill_one_and_start_it_again(make_env, tmp_path):
    env = make_env(nsources=N)
    env.raw["synchro"].update(sleep_period=PERIOD, calls_per_period=50)
    env.write_config(logging={"level": "info", "format": "json"},
                     archive={"enabled": True, "timezone": "UTC", "tasks": [
                         {"name": "nightly", "destination": str(tmp_path / "archive"),
                          "schedule": "daily", "at": "03:00"}]})
    expected = _add(env, "a", 5)
    started: list[Daemon] = []
    sampler = Sampler(env)
    sampler.start()
    try:
        daemons = [_start(env, f"d{k}", started) for k in (1, 2, 3)]
        names = {d.name for d in daemons}
        own = wait_until(lambda: _balanced(env, names), 30, "3 sources each", interval=0.3)
        assert sorted(collections.Counter(own.values()).values()) == [3, 3, 3], own
        wait_until(lambda: _all_marked(env), 60, "the first calls marked", interval=0.3)
        holders = [d for d in daemons if d.find("duty_claimed", duty="archive")]
        assert len(holders) == 1, [d.label for d in holders]   # one daemon keeps the slots

        victim = holders[0]
        survivors = [d for d in daemons if d is not victim]
        lost = {s for s, o in own.items() if o == victim.name}
        claims_before = {d.name: len(d.find("sources_claimed")) for d in survivors}
        victim.kill9()
        t_kill = time.monotonic()
        late = _add(env, "b", 3)
        expected |= late

        def taken_over():
            got = {s for d in survivors for e in d.find("sources_claimed")[claims_before[d.name]:]
                   for s in e["sources"]}
            return lost <= got
        wait_until(taken_over, PERIOD + 10, f"the survivors claiming {sorted(lost)}", interval=0.05)
        claimed_after = time.monotonic() - t_kill
        own = wait_until(lambda: _balanced(env, {d.name for d in survivors}), 10,
                         "the survivors owning all nine, at most five each", interval=0.2)
        assert sorted(collections.Counter(own.values()).values()) == [4, 5], own
        wait_until(lambda: any(d.find("duty_claimed", duty="archive") for d in survivors), 15,
                   "a survivor taking the archive duty")
        wait_until(lambda: _all_marked(env), 60, "the calls recorded after the kill marked")

        again = _start(env, "d3-again", started)
        names = {d.name for d in survivors} | {again.name}
        own = wait_until(lambda: _balanced(env, names), 30, "3 sources each again", interval=0.3)
        assert sorted(collections.Counter(own.values()).values()) == [3, 3, 3], own
        expected |= _add(env, "c", 3)
        wait_until(lambda: _all_marked(env), 60, "the calls recorded after the restart marked")
        assert not [d for d in survivors + [again] if d.find("duty_claimed", duty="archive")
                    and d is not next(s for s in survivors if s.find("duty_claimed", duty="archive"))]
        for d in survivors + [again]:
            assert d.stop() == 0, d.tail()
    finally:
        sampler.done.set()
        sampler.join(5)
        for d in started:
            d.close()
    print(f"\nkill -9 of {victim.label}: {sorted(lost)} claimed {claimed_after:.2f} s later "
          f"(sleep_period {PERIOD} s); {sampler.samples} ownership samples")
    assert sampler.samples > 20
    assert sampler.doubles == [], sampler.doubles[:10]
    assert claimed_after <= PERIOD + 3, f"claimed {claimed_after:.2f} s after the kill"
    assert_consistent(env, expected, nsources=N)
    dup = env.target("SELECT r.source, c.source_cplid, count(*) FROM synchrod.run_calls c"
                     " JOIN synchrod.runs r ON r.id = c.run_id"
                     " WHERE c.outcome IN ('synchronized', 'not_used')"
                     " GROUP BY 1, 2 HAVING count(*) > 1")
    assert dup == []
    _runs_never_overlap(env)
