"""SPEC §7: several daemons share one replay database. Each source is worked
by one daemon at a time (a PostgreSQL advisory lock on a dedicated
connection); a daemon killed with SIGKILL loses its locks with its connection
and a survivor takes its sources over within one sleep period. Real
`synchrod run` processes, real signals, real databases and files."""
from __future__ import annotations

import collections
import datetime as dt
import json
import math
import signal
import time
from pathlib import Path

import pytest

import _daemon
from _daemon import status_json, synchrod, wait_until
from conftest import call
from invariants import assert_consistent, assert_media_matches_winner
from synchrod.testing.recorders import FileSpec

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

SOURCES = {"rec1", "rec2"}


def _small(sid: str, minutes_ago: int = 60, size: int = 2048, **kw):
    """A call with one small media file (bytes, not a WAV: keeps the test fast)."""
    return call(sid, minutes_ago=minutes_ago,
                file_specs=[FileSpec("AUDIO", f"/calls/{sid}/0.wav", size=size, content="bytes")],
                **kw)


def owners(report: dict) -> dict[str, str | None]:
    return {s["sysname"]: s["owner"] for s in report["sources"]}


def published_views(env) -> dict[str, dict]:
    """Each daemon's own published view of the sources (synchrod.daemons), by name."""
    rows = env.target("SELECT name, sources FROM synchrod.daemons")
    return {name: (json.loads(src) if isinstance(src, str) else src) for name, src in rows}


def _configure(env, **synchro) -> None:
    env.raw["synchro"].update(synchro)
    env.write_config(logging={"level": "info", "format": "json"})


def _all_marked(env) -> bool:
    """Every call of every source marked."""
    return all(None not in env.marks(i).values() for i in range(len(env.source_dbs)))


def _marks_summary(env) -> dict:
    return {env.raw["sources"][i]["sysname"]: dict(collections.Counter(env.marks(i).values()))
            for i in range(2)}


def _settled_status(env, names: set[str]):
    """status --json once the daemons are listed, every source has an owner
    and the sources are balanced (none above ceil(sources / daemons), SPEC §11)."""
    bound = math.ceil(len(SOURCES) / len(names))

    def ok():
        report = status_json(env)
        listed = {d["name"] for d in report["daemons"]}
        own = owners(report)
        if listed == names and set(own) == SOURCES and all(o in names for o in own.values()) \
                and max(collections.Counter(own.values()).values()) <= bound:
            return report
        return None
    return wait_until(ok, 30, f"status --json listing {sorted(names)} with an owner per source, "
                              "balanced", interval=0.3)


def _runs_never_overlap(env) -> None:
    """No two cycles of one source ran at once (whichever daemons ran them)."""
    runs = env.target("SELECT source, daemon, started_at, finished_at FROM synchrod.runs"
                      " ORDER BY source, started_at")
    for (s1, d1, _, end), (s2, d2, start, _) in zip(runs, runs[1:]):
        assert s1 != s2 or start >= end, f"{s1}: a cycle of {d2} began before one of {d1} ended"


def _assert_no_erroneous(env) -> None:
    for i in range(2):
        marks = env.marks(i)
        assert set(marks.values()) <= {"S", "N"}, _marks_summary(env)


def _ownership_log(*ds) -> list[str]:
    return [f"{d.label} {e['timestamp']} {e['event']} {e.get('sources')} {e.get('reason', '')}"
            for d in ds for e in d.events()
            if e.get("event") in ("sources_claimed", "ownership_lost", "sources_released")]


def _cycles(d, source: str) -> list[tuple[float, float, str]]:
    """(start, end, description) of every cycle of ``source`` the daemon logged."""
    out = []
    for e in d.find("cycle", source=source):
        end = dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        out.append((end - e["seconds"], end,
                    f"{d.label} {e['timestamp']} ({e['seconds']} s, taken {e['taken']})"))
    return out


def _live_owned(env) -> dict[str, list[str]]:
    """source -> the live daemons whose published view says they own it."""
    rows = env.target("SELECT d.name, d.sources FROM synchrod.daemons d WHERE d.backend_pid IN"
                      " (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)")
    out = collections.defaultdict(list)
    for name, sources in rows:
        sources = json.loads(sources) if isinstance(sources, str) else sources
        for src, st in sources.items():
            if st.get("owned"):
                out[src].append(name)
    return dict(out)


@pytest.mark.slow
def test_two_daemons_share_the_sources_and_drain_them_exactly_once(env, daemons):
    _configure(env, sleep_period=1, calls_per_period=100)
    shared = [f"x{n:03d}" for n in range(40)]          # the same calls on both recorders
    env.add_calls(0, [_small(f"a{n:03d}", 90 + n % 30) for n in range(200)]
                  + [_small(s, 100) for s in shared])
    env.add_calls(1, [_small(f"b{n:03d}", 90 + n % 30) for n in range(200)]
                  + [_small(s, 100, size=4096) for s in shared])   # rec2's copy is better

    d1, d2 = daemons("d1"), daemons("d2")
    names = {d1.name, d2.name}
    report = _settled_status(env, names)
    own = owners(report)
    # balanced: one source each, and the log says who claimed what
    assert sorted(own.values()) == sorted(names), own
    for s, o in own.items():
        assert s in {d1.name: d1, d2.name: d2}[o].claimed(), (s, o)
    for s in report["sources"]:
        assert s["state"] in ("running", "waiting"), s
    print(f"\nowners: {own} (d1 {d1.name}, d2 {d2.name})")

    # each daemon's own published view: the sources of the other are standby
    def views_settled():
        views = published_views(env)
        if set(views) != names:
            return None
        for name, view in views.items():
            for src in SOURCES:
                st = view.get(src, {})
                mine = own[src] == name
                if st.get("owned") != mine or (not mine and st.get("state") != "standby"):
                    return None
        return views
    wait_until(views_settled, 15, "each daemon publishing the other's sources as standby")

    # calls recorded while both run
    env.add_calls(0, [_small(f"c{n:03d}", 30) for n in range(100)])
    env.add_calls(1, [_small(f"d{n:03d}", 30) for n in range(100)])
    wait_until(lambda: _all_marked(env), 90, "every call marked", interval=0.3)

    # a `once` while the daemons own every source leaves them alone
    once = env.once()
    assert once.returncode == 0, (once.stdout, once.stderr)
    rows = {line.split()[0]: line.split()[1] for line in once.stdout.splitlines()
            if line.split() and line.split()[0] in SOURCES}
    assert rows == {"rec1": "standby", "rec2": "standby"}, once.stdout

    # still both alive, still one owner each; then a clean stop
    assert owners(status_json(env)) == own
    assert d1.stop() == 0, d1.tail()
    assert d2.stop() == 0, d2.tail()
    assert status_json(env)["daemons"] == []

    _assert_no_erroneous(env)
    expected = ({f"a{n:03d}" for n in range(200)} | {f"b{n:03d}" for n in range(200)}
                | {f"c{n:03d}" for n in range(100)} | {f"d{n:03d}" for n in range(100)}
                | set(shared))
    assert_consistent(env, expected)
    assert_media_matches_winner(env)
    # the better copy of a shared call won, whoever delivered it first
    for cfpath, size in env.target("SELECT f.cfpath, f.cfsize FROM callrec.cfiles f JOIN"
                                   " callrec.couples c ON c.id = f.cplid WHERE c.sid LIKE 'x%'"):
        assert "+rec2+" in cfpath and size == 4096, cfpath

    # exactly once: every source couple delivered by one outcome, and only by its owner
    dup = env.target("SELECT r.source, c.source_cplid, count(*) FROM synchrod.run_calls c"
                     " JOIN synchrod.runs r ON r.id = c.run_id"
                     " WHERE c.outcome IN ('synchronized', 'not_used')"
                     " GROUP BY 1, 2 HAVING count(*) > 1")
    assert dup == []
    (delivered,), = env.target("SELECT count(*) FROM synchrod.run_calls"
                               " WHERE outcome IN ('synchronized', 'not_used')")
    assert delivered == 2 * (200 + 100 + len(shared))
    # d1, first up, worked both until d2 joined; never two cycles of a source at once
    _runs_never_overlap(env)
    late = env.target("SELECT r.source, r.daemon FROM synchrod.runs r JOIN synchrod.run_calls c"
                      " ON c.run_id = r.id WHERE c.sid LIKE 'c%' OR c.sid LIKE 'd%'")
    assert {(s, d) for s, d in late} <= {(s, own[s]) for s in SOURCES}, late


@pytest.mark.slow
def test_kill9_of_the_owner_survivor_takes_over_within_one_sleep_period(env, daemons):
    period = 2
    _configure(env, sleep_period=period, calls_per_period=100)
    env.add_calls(0, [_small(f"a{n:02d}") for n in range(20)])
    env.add_calls(1, [_small(f"b{n:02d}") for n in range(20)])
    d1, d2 = daemons("d1"), daemons("d2")
    by_name = {d1.name: d1, d2.name: d2}
    _settled_status(env, set(by_name))
    wait_until(lambda: _all_marked(env), 30, "the first calls marked", interval=0.2)

    own = owners(_settled_status(env, set(by_name)))
    victim_name, _ = collections.Counter(own.values()).most_common(1)[0]
    victim = by_name[victim_name]
    survivor = d2 if victim is d1 else d1
    lost = sorted(s for s, o in own.items() if o == victim_name)
    assert lost and set(lost) <= victim.claimed()   # (the survivor may have held them before)

    # calls recorded but not finished yet: no candidates until the kill
    index = {env.raw["sources"][i]["sysname"]: i for i in range(2)}
    late = {s: [f"late-{s}-{k}" for k in range(5)] for s in lost}
    for s in lost:
        env.add_calls(index[s], [_small(sid, 5, state="DECODED") for sid in late[s]])
    claims_before = len(survivor.find("sources_claimed"))

    victim.kill9()
    t_kill = time.monotonic()
    for s in lost:   # the calls finish now (one statement: the window is milliseconds)
        env.source(index[s], "UPDATE callrec.couples SET state = 'FINISHED' WHERE sid = ANY(%s)",
                   late[s])

    def taken_over():
        got = {x for e in survivor.find("sources_claimed")[claims_before:] for x in e["sources"]}
        return set(lost) <= got
    wait_until(taken_over, period + 10, f"{survivor.label} claiming {lost}", interval=0.05)
    claim_after = time.monotonic() - t_kill

    def late_synced():
        return all(env.marks(index[s]).get(sid) == "S" for s in lost for sid in late[s])
    wait_until(late_synced, period + 15, "the late calls marked S by the survivor", interval=0.05)
    synced_after = time.monotonic() - t_kill

    # the dead daemon's row is ignored at once: its owner connection is gone
    after = status_json(env)
    assert [d["name"] for d in after["daemons"]] == [survivor.name], after["daemons"]
    # the survivor publishes its new sources within its publish period (1 s)
    wait_until(lambda: owners(status_json(env)) == {s: survivor.name for s in SOURCES}, 5,
               "status showing the survivor as owner of every source", interval=0.2)

    assert survivor.stop() == 0, survivor.tail()
    print(f"\ntakeover: claimed {claim_after:.2f} s, late calls S {synced_after:.2f} s "
          f"after the kill (sleep_period {period} s)")
    assert claim_after <= period + 3, f"claimed {claim_after:.2f} s after the kill"
    assert synced_after <= period + 4, f"late calls S {synced_after:.2f} s after the kill"

    _assert_no_erroneous(env)
    expected = ({f"a{n:02d}" for n in range(20)} | {f"b{n:02d}" for n in range(20)}
                | {sid for sids in late.values() for sid in sids})
    assert_consistent(env, expected)
    assert_media_matches_winner(env)
    (daemon,), = env.target("SELECT DISTINCT daemon FROM synchrod.runs r JOIN synchrod.run_calls c"
                            " ON c.run_id = r.id WHERE c.sid LIKE 'late-%'")
    assert daemon == survivor.name


@pytest.mark.slow
def test_owner_killed_mid_drain_survivor_repairs_and_finishes(env, daemons):
    """The owner dies by SIGKILL between a chunk's commit and its marks (the
    next chunk's copies in flight); the other daemon takes over, repairs and
    drains: every call exactly once, no orphan, no temporary file."""
    _configure(env, sleep_period=1, calls_per_period=200)
    victim = daemons("victim", extra_env={"SYNCHROD_FAULT": "after_commit",
                                          "SYNCHROD_FAULT_ACTION": "kill",
                                          "SYNCHROD_FAULT_SKIP": "1",
                                          "SYNCHROD_FAULT_SOURCE": "rec1"})
    wait_until(lambda: victim.claimed() == SOURCES, 30, "the victim claiming every source")

    shared = [f"x{n:03d}" for n in range(30)]
    # rec2 first: its group is draining too when rec1's second commit kills the victim
    env.add_calls(1, [_small(f"b{n:03d}", 120 + n % 50, size=16384) for n in range(300)]
                  + [_small(s, 150) for s in shared])
    env.add_calls(0, [_small(f"a{n:03d}", 120 + n % 50, size=16384) for n in range(300)]
                  + [_small(s, 150) for s in shared])
    # once the victim's cycle of rec1 has begun committing, the other daemon cannot take rec1
    # before the kill: a share moves only after the cycle in hand, and the victim dies in it
    wait_until(lambda: "S" in env.marks(0).values() or victim.proc.poll() is not None, 60,
               "the victim's first chunk of rec1", interval=0.05)
    survivor = daemons("survivor")

    victim.proc.wait(60)
    assert victim.proc.returncode == -9, victim.tail()
    t_kill = time.monotonic()
    half_done = _marks_summary(env)
    assert half_done["rec1"].get(None, 0) > 0, half_done   # it died mid-drain
    survivor.wait_event("sources_claimed", 10)
    wait_until(lambda: survivor.claimed() == SOURCES, 10, "the survivor claiming every source")
    wait_until(lambda: _all_marked(env), 60, "every call marked", interval=0.2)
    drained_after = time.monotonic() - t_kill
    assert survivor.stop() == 0, survivor.tail()
    print(f"\nmid-drain kill: {half_done} at the kill; drained {drained_after:.2f} s later")

    _assert_no_erroneous(env)
    expected = ({f"a{n:03d}" for n in range(300)} | {f"b{n:03d}" for n in range(300)}
                | set(shared))
    assert_consistent(env, expected)
    assert_media_matches_winner(env)
    assert status_json(env)["daemons"] == []


def test_once_skips_sources_a_daemon_owns(env, daemons):
    _configure(env, sleep_period=3600)
    env.add_calls(0, [_small("a1")])
    d = daemons("d")
    wait_until(lambda: d.claimed() == SOURCES, 30, "the daemon claiming every source")
    wait_until(lambda: env.marks(0).get("a1") == "S", 30, "the first call synchronized")
    env.add_calls(0, [_small("a2", 10)])      # the daemon sleeps an hour: a2 stays
    once = env.once("--until-idle")
    assert once.returncode == 0, (once.stdout, once.stderr)
    states = {line.split()[0]: line.split()[1] for line in once.stdout.splitlines()
              if line.split() and line.split()[0] in SOURCES}
    assert states == {"rec1": "standby", "rec2": "standby"}, once.stdout
    assert env.marks(0) == {"a1": "S", "a2": None}
    assert d.stop() == 0, d.tail()
    # with the daemon gone, once works the sources itself
    env.once(check_rc=0)
    assert env.marks(0) == {"a1": "S", "a2": "S"}
    assert_consistent(env, {"a1", "a2"})


def test_status_without_daemons_lists_sources_unowned(env):
    report = status_json(env)
    assert report["daemons"] == []
    assert {s["sysname"]: (s["state"], s["owner"]) for s in report["sources"]} == \
        {"rec1": ("unowned", None), "rec2": ("unowned", None)}


@pytest.mark.slow
def test_owner_connection_cut_mid_drain_one_worker_per_source_exactly_once(env, daemons):
    """The owner's lock connection is cut (pg_terminate_backend: a network
    blip) while it drains; the daemon itself lives on. The standby daemon may
    take the sources (or the first one re-claims them first), the first one
    notices it lost them, no two daemons run cycles of one source at once,
    and every call still arrives exactly once."""
    _configure(env, sleep_period=1, calls_per_period=50)
    d1 = daemons("d1")
    wait_until(lambda: d1.claimed() == SOURCES, 30, "d1 claiming every source")
    d2 = daemons("d2")
    wait_until(lambda: set(published_views(env).get(d2.name, {})) == SOURCES, 30,
               "d2 publishing its view")
    env.add_calls(0, [_small(f"a{n:03d}", 120 + n % 40) for n in range(200)])
    env.add_calls(1, [_small(f"b{n:03d}", 120 + n % 40) for n in range(200)])
    wait_until(lambda: "S" in env.marks(0).values(), 30, "d1 draining", interval=0.05)

    (backend,), = env.target("SELECT backend_pid FROM synchrod.daemons WHERE name = %s", d1.name)
    t_cut = time.monotonic()
    (killed,), = env.target("SELECT pg_terminate_backend(%s)", backend)
    assert killed

    wait_until(lambda: _all_marked(env), 90, "every call marked", interval=0.1)
    drained_after = time.monotonic() - t_cut
    d1.wait_event("ownership_lost", 10)
    assert d1.alive() and d2.alive()
    report = _settled_status(env, {d1.name, d2.name})
    print(f"\nafter the cut: drained in {drained_after:.2f} s; owners {owners(report)}; "
          f"d2 claimed {sorted(d2.claimed())}")
    assert d1.stop() == 0, d1.tail()
    assert d2.stop() == 0, d2.tail()
    _assert_no_erroneous(env)
    assert_consistent(env, {f"a{n:03d}" for n in range(200)} | {f"b{n:03d}" for n in range(200)})
    assert_media_matches_winner(env)

    # one daemon at a time: no cycle of a source overlaps another daemon's cycle of it
    overlaps = [(src, a, b) for src in SOURCES
                for a in _cycles(d1, src) for b in _cycles(d2, src)
                if a[0] < b[1] and b[0] < a[1]]
    assert not overlaps, "\n".join(["cycles of one source by two daemons at once:"]
                                    + [f"{src}: {a[2]} {b[2]}" for src, a, b in overlaps[:6]]
                                    + _ownership_log(d1, d2))


def test_owner_cut_off_mid_cycle_leaves_consistent_data(env, daemons, tmp_path):
    """d1 has copied a chunk (media durable, rows not committed: held at
    ``after_sync``) when it freezes (SIGSTOP) and its lock connection is cut:
    to d2 it is dead, so d2 takes rec1 over and starts its cycle (repair,
    then load; held at ``after_load``); then d1 thaws and commits the chunk
    in hand, then d2 goes on. The end state must still be consistent: every
    target row's file on disk, exactly once, no orphan."""
    _configure(env, sleep_period=1, calls_per_period=50)
    release1, release2 = tmp_path / "release-d1", tmp_path / "release-d2"
    d1 = daemons("d1", extra_env={"SYNCHROD_FAULT": "after_sync", "SYNCHROD_FAULT_ACTION": "hang",
                                  "SYNCHROD_FAULT_RELEASE": str(release1),
                                  "SYNCHROD_FAULT_SOURCE": "rec1"})
    wait_until(lambda: d1.claimed() == SOURCES, 30, "d1 claiming every source")
    sids = [f"a{n:02d}" for n in range(10)]
    env.add_calls(0, [_small(s) for s in sids])

    # d1 holds its copies, durable and journaled, not committed
    wait_until(lambda: len(env.target_files()) == len(sids), 30, "d1's copies on disk")
    d2 = daemons("d2", extra_env={"SYNCHROD_FAULT": "after_load", "SYNCHROD_FAULT_ACTION": "hang",
                                  "SYNCHROD_FAULT_RELEASE": str(release2),
                                  "SYNCHROD_FAULT_SOURCE": "rec1"})
    wait_until(lambda: set(published_views(env).get(d2.name, {})) == SOURCES, 30,
               "d2 publishing its view")
    (backend,), = env.target("SELECT backend_pid FROM synchrod.daemons WHERE name = %s", d1.name)
    d1.proc.send_signal(signal.SIGSTOP)   # it cannot reconnect: the others see it dead
    try:
        env.target("SELECT pg_terminate_backend(%s)", backend)
        wait_until(lambda: "rec1" in d2.claimed(), 15, "d2 claiming rec1")
        # d2's cycle of rec1 begins (repair, load) and holds after loading
        try:
            wait_until(lambda: d2.find("repair", source="rec1"), 3, "d2's repair")
        except AssertionError:
            pass   # nothing to repair is fine too
        files_while_d2_holds = len(env.target_files())
    finally:
        d1.proc.send_signal(signal.SIGCONT)

    release1.touch()   # d1 goes on with the chunk it had in hand
    wait_until(lambda: [e for e in d1.find("cycle", source="rec1") if e["taken"]], 15,
               "d1's cycle of rec1 ending")
    release2.touch()   # d2 goes on with the batch it loaded
    wait_until(lambda: [e for e in d2.find("cycle", source="rec1") if e["taken"]], 15,
               "d2's cycle of rec1 ending")
    wait_until(lambda: _all_marked(env), 15, "every call marked")
    assert d1.stop() == 0, d1.tail()
    assert d2.stop() == 0, d2.tail()
    print(f"\nfiles on disk while d2 held after its repair: {files_while_d2_holds} of {len(sids)};"
          f" d2 repair events: {d2.find('repair')}")
    referenced = [p for p, in env.target("SELECT cfpath FROM callrec.cfiles")]
    missing = [p for p in referenced if not Path(p).exists()]
    runs = env.target("SELECT daemon, taken, synchronized, not_used, failed FROM synchrod.runs"
                      " WHERE source = 'rec1' AND taken > 0 ORDER BY id")
    assert not missing, (f"{len(missing)} of {len(referenced)} files the target references are"
                         f" not on disk; marks {collections.Counter(env.marks(0).values())};"
                         f" runs of rec1 (daemon, taken, S, N, failed): {runs};"
                         f" d1 is {d1.name}, d2 is {d2.name}; d2 repair: {d2.find('repair')}")
    _assert_no_erroneous(env)
    assert_consistent(env, set(sids))
    assert_media_matches_winner(env)


@pytest.mark.slow
def test_status_never_shows_two_owners_after_a_lock_connection_cut(env, daemons):
    """d1's lock connection is cut while both daemons idle (sleep_period
    3600): d1 notices at once (ownership_lost) and reconnects; `run-now`
    wakes the daemons, and each source ends up owned by exactly one of them.
    Throughout, `status` and synchrod.daemons must never show a source owned
    by two live daemons (a daemon must not publish locks it lost)."""
    _configure(env, sleep_period=3600)
    d1 = daemons("d1")
    wait_until(lambda: d1.claimed() == SOURCES, 30, "d1 claiming every source")
    d1.wait_event("cycle", 10, source="rec1")
    d2 = daemons("d2")
    wait_until(lambda: all(v.get("state") == "standby"
                           for v in published_views(env).get(d2.name, {"x": {}}).values()),
               30, "d2 on standby")

    (backend,), = env.target("SELECT backend_pid FROM synchrod.daemons WHERE name = %s", d1.name)
    samples, doubles = 0, []
    t0 = time.monotonic()

    def sample() -> None:
        nonlocal samples
        for src, names in _live_owned(env).items():
            if len(names) > 1:
                doubles.append((round(time.monotonic() - t0, 2), src, names))
        samples += 1

    env.target("SELECT pg_terminate_backend(%s)", backend)
    d1.wait_event("ownership_lost", 5)
    wake = synchrod(env, "run-now")
    assert wake.returncode == 0 and "daemon(s)" in wake.stdout, wake.stdout
    deadline = time.monotonic() + 10
    while True:
        sample()
        report = status_json(env)
        if all(s["owner"] in (d1.name, d2.name) for s in report["sources"]):
            break
        assert time.monotonic() < deadline, report["sources"]
        time.sleep(0.05)
    d1.proc.send_signal(signal.SIGHUP)      # d1 publishes again
    d1.wait_event("config_reloaded", 5)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        sample()
        time.sleep(0.05)
    report = status_json(env)
    assert {d["name"] for d in report["daemons"]} == {d1.name, d2.name}, report["daemons"]
    views = published_views(env)
    for src in SOURCES:
        owning = [name for name, v in views.items() if v.get(src, {}).get("owned")]
        assert len(owning) == 1, (src, views)
        assert owners(report)[src] == owning[0]
    assert d1.stop() == 0, d1.tail()
    assert d2.stop() == 0, d2.tail()
    assert not doubles, "\n".join(
        [f"{len(doubles)} of {samples} samples show two live owners (s after SIGHUP, source,"
         f" daemons): first {doubles[0]}, last {doubles[-1]}"] + _ownership_log(d1, d2))
