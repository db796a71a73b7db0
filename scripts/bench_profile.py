"""``--profile``: where the time of a drain goes. One drain in this process
with the cycle's phases, the media pool's functions and every SQL
statement timed (by wrapping them for its duration), printed by time
spent.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench_env import engine_on
from synchrod.testing.stage import say


def _sql_key(args) -> str:
    """A statement's first words, comments left out."""
    text = " ".join(line for line in args[1].splitlines() if not line.lstrip().startswith("--"))
    return "SQL " + " ".join(text.split()[:7])


def profile_drain(cfg_path: Path, label: str) -> None:
    """Drains in-process with the cycle's phases and every SQL statement timed.

    Phase times are wall times on the event loop; functions run in the media
    pool (marked [pool]) are summed over its threads, so they exceed the wall
    time when the pool runs in parallel (or waits for the GIL).
    """
    import asyncpg.connection as apc
    from collections import defaultdict
    import functools

    from synchrod import logs, recorder
    from synchrod.fs import copying, sourcefiles
    from synchrod.replay.writes import BatchWriter
    from synchrod.sync import cycle, finish, transfer
    from synchrod.replay import journal
    from synchrod.sync.rounds import run_once

    spent, calls = defaultdict(float), defaultdict(int)
    saved = []

    def patch(owner, attr, key):
        orig = getattr(owner, attr, None)
        if orig is None:  # synchrod changed: say so rather than fail the benchmark
            say(f"[{label}] profile: {owner.__name__}.{attr} not found, not timed")
            return
        saved.append((owner, attr, orig))
        if asyncio.iscoroutinefunction(orig):
            @functools.wraps(orig)
            async def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return await orig(*a, **k)
                finally:
                    spent[key(a)] += time.perf_counter() - t
                    calls[key(a)] += 1
        else:
            @functools.wraps(orig)
            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return orig(*a, **k)
                finally:
                    spent[key(a)] += time.perf_counter() - t
                    calls[key(a)] += 1
        setattr(owner, attr, wrapper)

    # each where the caller looks it up
    for owner, attr in [(cycle, "repair"), (recorder.Recorder, "load_batch"), (cycle, "transfer"),
                        (journal, "record_intents"), (BatchWriter, "commit"), (recorder.Recorder, "mark"),
                        (finish.ChunkFinisher, "finish"), (finish, "remove_unused"),
                        (cycle, "sync_speech_tags")]:
        patch(owner, attr, lambda a, n=f"{owner.__name__.split('.')[-1]}.{attr}": n)
    for owner, attr in [(transfer, "_deliver_files"), (copying, "copy_to"), (sourcefiles, "locate"),
                        (copying, "syncfs")]:
        patch(owner, attr, lambda a, n=f"[pool] {owner.__name__.split('.')[-1]}.{attr}": n)
    for meth in ("execute", "executemany", "fetch", "fetchval", "fetchrow"):
        patch(apc.Connection, meth, _sql_key)
    # COPY into callrec.couples/cfiles (CallREC's row triggers fire there)
    patch(apc.Connection, "copy_records_to_table", lambda a: f"SQL COPY {a[1]} (copy_records_to_table)")
    logs.setup("warning", "json")

    async def go():
        async with engine_on(cfg_path) as engine:
            t = time.perf_counter()
            totals = await run_once(engine, None, True, False)
            return time.perf_counter() - t, totals
    try:
        wall, totals = asyncio.run(go())
    finally:
        for owner, attr, orig in reversed(saved):
            setattr(owner, attr, orig)
    t = totals["rec"]
    say(f"[{label}] profile: in-process drain of {t.taken} calls in {t.cycles} cycles: {wall:.2f} s")
    for k in sorted((k for k in spent if not k.startswith("SQL")), key=spent.get, reverse=True):
        say(f"[{label}]   {k:<34} {spent[k]:8.3f} s  x{calls[k]}")
    say(f"[{label}]   top SQL statements (wall, count):")
    for k in sorted((k for k in spent if k.startswith("SQL")), key=spent.get, reverse=True)[:12]:
        say(f"[{label}]   {spent[k]:8.3f} s  x{calls[k]:<4} {k[4:]}")
