"""One cycle of one source: load → plan → media → durable → commit → mark.

The order is the crash-safety contract (SPEC §3.7): media is durable before
the rows that reference it commit, the source is marked only after the
target commit, and files the target stopped using are removed last. Each
step is idempotent, so the next cycle repairs any interruption.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import structlog

from . import faults, media, recorder, speech
from .core import filters, rowcheck
from .core.catalog import int_limit
from .core.model import COUPLE_COLUMNS, SourceCouple
from .core.plan import decide
from .dbconn import UNREACHABLE, redact
from .engine import Engine, MediaStalled, SameDatabaseError, SchemaError, SourceRuntime
from .recorder import Recorder
from .replay import history, journal, reads
from .replay.writes import Committed, Failure, Policy, commit_batch, save_resync_cursor
from .transfer import Prepared, fill_unknown_sizes, transfer

log = structlog.get_logger("synchrod.cycle")


@dataclass(kw_only=True)
class Counts:
    """What one or more cycles of a source did."""
    taken: int = 0
    synchronized: int = 0
    not_used: int = 0
    erroneous: int = 0
    failed: int = 0
    skipped: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def add_counts(self, other: "Counts") -> None:
        for f in fields(Counts):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class CycleResult(Counts):
    source: str
    state: str = "ok"            # ok | idle | down | error | disabled
    error: str | None = None
    run_id: int | None = None
    dry_run_plan: list[tuple[str, str]] = field(default_factory=list)  # (sid, action)

    @property
    def progressed(self) -> bool:
        """Something left the candidate set this cycle."""
        return self.synchronized + self.not_used + self.erroneous > 0


async def run_cycle(engine: Engine, rt: SourceRuntime, dry_run: bool = False,
                    stop: asyncio.Event | None = None,
                    still_owner: Callable[[str], bool] | None = None) -> CycleResult:
    """One cycle of one source. ``stop`` set, or the source's ownership lost
    (``still_owner``), during it: no new chunk is taken; the one in hand is
    still committed and marked."""
    src = rt.cfg
    res = CycleResult(src.sysname)
    t0 = time.monotonic()
    bound = log.bind(source=src.sysname)
    if not rt.check_resumed():
        res.state, res.error = "down", rt.last_error
        return res
    rt.refresh_pool(engine.config.synchro.copy_workers)
    rt.state = "running"
    rt.generation += 1
    started_at = dt.datetime.now(dt.timezone.utc)
    previous_error = rt.last_error
    try:
        def keep_going() -> bool:  # paused: the chunk in hand finishes, no new one
            return not (stop is not None and stop.is_set()) and rt.paused_by is None and \
                (still_owner is None or still_owner(src.sysname))
        await _cycle(engine, rt, res, dry_run, bound, keep_going)
    except (SameDatabaseError, SchemaError) as exc:
        res.state, res.error = "error", str(exc)
    except UNREACHABLE as exc:
        res.state, res.error = "down", f"database unreachable: {redact(str(exc))}"
        await rt.drop()
    except (media.TargetError, journal.TicketLost) as exc:
        res.state, res.error = "error", str(exc)
    except MediaStalled as exc:
        # nothing is an attempt: the calls in hand are taken again once the I/O returns
        res.state, res.error = "down", f"stalled: {exc}"
        rt.stalled_since = dt.datetime.now(dt.timezone.utc)
        bound.error("source_stalled", error=str(exc), busy_workers=len(rt.inflight))
    except Exception as exc:  # noqa: BLE001 - one source's fault must not stop the others
        bound.exception("cycle_failed")
        res.state, res.error = "error", redact(f"{type(exc).__name__}: {exc}")
        await rt.drop()
    finally:
        res.seconds = time.monotonic() - t0
        failed = res.state in ("down", "error")
        rt.state = "down" if failed else "waiting"
        rt.last_error = res.error
        rt.last_cycle_at = dt.datetime.now(dt.timezone.utc)
        rt.failures_in_row = rt.failures_in_row + 1 if failed else 0
        if not failed:
            rt.last_success_at = rt.last_cycle_at
        rt.last_result = res
        if res.taken:
            rt.last_work = res
    if not dry_run:
        await _record_end(engine, rt, res, started_at, previous_error, bound)
    # one event per cycle per source, idle ones included (the daemon's heartbeat)
    bound.log(logging.WARNING if res.error else logging.INFO, "cycle",
              state=res.state, taken=res.taken, synchronized=res.synchronized,
              not_used=res.not_used, erroneous=res.erroneous, failed=res.failed,
              skipped=res.skipped, files=res.files, bytes=res.bytes,
              seconds=round(res.seconds, 3), error=res.error)
    for listener in engine.cycle_listeners:
        listener(rt, res)
    return res


async def _record_end(engine: Engine, rt: SourceRuntime, res: CycleResult,
                      started_at: dt.datetime, previous_error: str | None, log) -> None:
    """History of failed cycles: a run that committed calls keeps its error; a
    failed cycle without calls is kept when its error is new (a source down
    for a day is one row, not one per cycle)."""
    if res.state not in ("down", "error") or not engine.schema_ready \
            or engine.target_pool is None:
        return
    try:
        async with engine.target_pool.acquire(timeout=5) as tconn:
            if res.run_id is not None:
                await history.end_run(tconn, res.run_id, res.state, res.error)
            elif res.error != previous_error:
                res.run_id = await history.failed_cycle(tconn, rt.cfg.sysname, engine.daemon_name,
                                                        started_at, res.state, res.error)
    except Exception as exc:  # noqa: BLE001 - the replay database may be what failed
        log.warning("history_not_recorded", error=redact(f"{type(exc).__name__}: {exc}"))


async def _cycle(engine: Engine, rt: SourceRuntime, res: CycleResult, dry_run: bool, log,
                 keep_going: Callable[[], bool]) -> None:
    cfg, src = engine.config, rt.cfg
    started_at = dt.datetime.now(dt.timezone.utc)
    problem = await rt.media(cfg.synchro.io_timeout, media.mount_problem, src.mount_path,
                             src.require_mount)
    if problem:
        res.state, res.error = "down", problem
        return
    rec = await rt.connection(engine)  # SchemaError: nothing is touched
    if cfg.synchro.manage_source_index and not rt.index_ready and not dry_run:
        rt.index_ready = await rec.ensure_index()

    async with engine.target_pool.acquire() as tconn:
        # a dry run may meet a replay database synchrod has not set up yet
        bookkeeping = engine.schema_ready
        if not dry_run:
            await _repair(tconn, src.sysname, log)
        excluded = await reads.in_backoff(tconn, src.sysname) if bookkeeping else []
        cursor = retry_due = None
        if src.synchronize_already_synchronized:
            cursor = (await reads.resync_cursor(tconn, src.sysname) if bookkeeping else None) \
                or (recorder.MINUS_INFINITY, 0)
            retry_due = await reads.retry_due(tconn, src.sysname) if bookkeeping else []

        rt.set_phase("load")
        earliest = filters.interval_start(src.interval, src.custom_interval_days,
                                          dt.datetime.now(dt.timezone.utc))
        batch = await rec.load_batch(
            earliest=earliest,
            only_finished=cfg.synchro.only_finished, only_processed=cfg.synchro.only_processed,
            without_streams=cfg.synchro.synchronize_couples_without_streams,
            excluded=excluded, limit=cfg.synchro.calls_per_period,
            voice_tags=cfg.synchro.synchronize_voice_tags, resync_cursor=cursor,
            retry_due=retry_due or ())
        faults.point("after_load", src.sysname)
        res.taken = len(batch)
        if not batch:
            res.state = "idle"
            if not excluded:  # nothing waits, not even in back-off: no query needed
                rt.backlog, rt.oldest_pending_at = 0, None
            else:
                await _measure_backlog(rec, rt, cfg, earliest)
            if cfg.synchro.synchronize_speech_tags and not dry_run:
                await sync_speech_tags(engine, tconn, rec, rt, log)
            return

        rt.set_phase("compare")
        # a value the replay database cannot take fails its own call only
        rejected, batch = _reject_unfit(engine, rec, src, batch)
        prepared = [Prepared(c, filters.taken_files(c.files, src, cfg.synchro.only_processed))
                    for c in batch]
        await fill_unknown_sizes(rt, prepared, cfg.synchro.io_timeout)
        current = await reads.couples_by_sid(tconn, [c.sid for c in batch]) if batch else {}
        for p in prepared:
            p.action = decide(p.quality(), current.get(p.couple.sid))
        if dry_run:
            res.dry_run_plan = [(rowcheck.printable(f.couple.sid), f"reject ({f.reason})")
                                for f in rejected]
            res.dry_run_plan += [(p.couple.sid, p.action.value) for p in prepared]
            return

        policy = Policy(src.sysname, engine.daemon_name, cfg.synchro.synchronize_voice_tags,
                        cfg.synchro.max_attempts, cfg.synchro.mark_erroneous,
                        cfg.synchro.backoff_base, engine.owned_roots(), rt.statements,
                        engine.target_catalog)
        committed = Committed()
        # Pipelined: while one chunk is made durable, committed and marked (on
        # a second connection), the next chunk's media is being copied.
        async with engine.target_pool.acquire() as fconn:
            finisher: asyncio.Task | None = None
            try:
                for chunk in _chunks(prepared, src.copy_files) or [[]]:
                    if not keep_going():
                        break  # stopping or no longer the owner: the chunk in hand finishes
                    rt.set_phase("copy")
                    moved = await transfer(engine, rt, chunk, current, tconn)
                    moved.failures = rejected + moved.failures  # the first chunk records them
                    rejected = []
                    if finisher is not None:
                        await finisher
                    finisher = asyncio.create_task(
                        _finish(rt, rec, fconn, policy, moved, started_at, committed, res, log,
                                cfg.synchro.io_timeout))
            except BaseException:
                if finisher is not None:  # the chunk in hand still commits and marks
                    await asyncio.wait([finisher])
                raise
            if finisher is not None:
                await finisher

        if cursor is not None:
            new_cursor = _advance_cursor(batch, committed, cursor)
            if new_cursor != cursor:
                await save_resync_cursor(tconn, src.sysname, new_cursor)
        if committed.missing_phrases:
            log.warning("voice_tag_phrases_missing", phrases=sorted(committed.missing_phrases)[:20],
                        count=len(committed.missing_phrases),
                        hint="voice tags whose phrase the replay database lacks were not copied")
        if cfg.synchro.synchronize_speech_tags:
            await sync_speech_tags(engine, tconn, rec, rt, log)
        await _measure_backlog(rec, rt, cfg, earliest)


def _reject_unfit(engine: Engine, rec: Recorder, src, batch: list[SourceCouple]):
    """(failures, the rest): calls holding a value the replay database cannot take."""
    target = engine.target_catalog
    limits = {c: lim for c in COUPLE_COLUMNS if (lim := int_limit(target, "couples", c))}
    rejected, fit = [], []
    for c in batch:
        found = rowcheck.problem(c, source_codec=rec.wire.codec if rec.wire else "UTF-8",
                                 target_codec=target.text_codec, target_encoding=target.encoding,
                                 link_paths=not src.copy_files, limits=limits)
        if found:
            rejected.append(Failure(c, *found))
        else:
            fit.append(c)
    return rejected, fit


async def _measure_backlog(rec: Recorder, rt: SourceRuntime, cfg, earliest) -> None:
    rt.backlog, rt.oldest_pending_at = await rec.backlog(
        earliest=earliest, only_finished=cfg.synchro.only_finished,
        only_processed=cfg.synchro.only_processed,
        without_streams=cfg.synchro.synchronize_couples_without_streams)


PIPELINE_MIN_CHUNK = 50


def _chunks(prepared: list, copy_files: bool) -> list[list]:
    """Up to four chunks of at least PIPELINE_MIN_CHUNK calls, in batch order.
    Link mode moves no bytes, so there is nothing to overlap the database
    work with: one chunk, one commit (measured faster on two cores)."""
    if not copy_files:
        return [prepared]
    size = max(PIPELINE_MIN_CHUNK, -(-len(prepared) // 4))
    return [prepared[i:i + size] for i in range(0, len(prepared), size)]


async def _finish(rt: SourceRuntime, rec: Recorder, fconn, policy: Policy, moved, started_at,
                  committed: Committed, res: CycleResult, log, io_timeout: float) -> None:
    """Durable → commit → mark → remove, for one chunk (SPEC §3.7)."""
    src = rt.cfg
    loop = asyncio.get_running_loop()
    for root in sorted(moved.roots):  # not the media pool: it is busy copying the next chunk
        await loop.run_in_executor(None, media.syncfs, root)
    failures, skipped = moved.failures, moved.skipped
    if failures and await rt.media(io_timeout, media.mount_problem, src.mount_path,
                                   src.require_mount):
        # the mount went away under us: not the calls' fault
        skipped = skipped + [Failure(f.couple, "source_unavailable", f.detail) for f in failures]
        failures = []
        res.error = "mount path became unavailable during the cycle"
    faults.point("after_sync", src.sysname)
    rt.set_phase("commit")
    try:
        part = await commit_batch(fconn, policy, moved.deliveries, failures, skipped, started_at,
                                  run_id=committed.run_id)
    except journal.TicketLost as exc:
        # a copy renamed into place after a repair took its ticket is nobody's
        for path in await journal.unclaimed(fconn, exc.lost):
            media.remove(path)
        raise
    faults.point("after_commit", src.sysname)
    rt.set_phase("mark")
    await rec.mark(part.marks)
    faults.point("after_mark", src.sysname)
    await _remove(fconn, part.orphaned + moved.abandoned, part.replaced, log)
    committed.absorb(part)
    _count(res, committed)  # so far: a later chunk may still fail


def _count(res: CycleResult, committed: Committed) -> None:
    res.synchronized = committed.count("synchronized")
    res.not_used = committed.count("not_used")
    res.erroneous = committed.count("erroneous")
    res.failed = committed.count("failed")
    res.skipped = committed.count("skipped")
    res.files, res.bytes, res.run_id = committed.files, committed.bytes, committed.run_id


def _advance_cursor(batch: list[SourceCouple], committed: Committed, cursor):
    """Moves the re-sync cursor over the leading calls that are settled."""
    done = {o.cplid for o in committed.outcomes if o.outcome in ("synchronized", "not_used", "erroneous")}
    for c in batch:
        if c.synchronized is not None and c.id not in done:
            break
        cursor = max(cursor, (c.start_ts, c.id))
    return cursor


# --- repair and removal ---------------------------------------------------------

async def _repair(tconn, source: str, log) -> None:
    """Removes what an interrupted cycle of this source left behind."""
    async with tconn.transaction():  # the tickets stay locked until the files are gone
        orphans = await journal.claim_orphans(tconn, source)
        for path in orphans:
            media.remove(path)
    kept = await journal.forget_referenced(tconn, source)
    if orphans or kept:
        log.info("repair", removed_orphans=len(orphans), committed_leftovers=kept)
    await _remove(tconn, [], None, log)


async def _remove(tconn, orphaned: list[str], replaced: list[str] | None, log) -> None:
    """Removes copies no committed row uses: this cycle's orphans, then the
    replaced files (all scheduled ones when ``replaced`` is None)."""
    if orphaned:
        # a copy can share its name with a file a committed row uses: prove it unused
        gone, _ = await journal.split_referenced(tconn, orphaned)
        for path in gone:
            media.remove(path)
        await journal.forget_pending(tconn, orphaned)
    if replaced == []:
        return
    gone, still_used = await journal.unlinkable(tconn, replaced)
    for path in gone:
        media.remove(path)
    await journal.forget_unlink(tconn, gone + still_used)


# --- speech tags -------------------------------------------------------------------

async def sync_speech_tags(engine: Engine, tconn, rec: Recorder, rt: SourceRuntime,
                           log) -> dict | None:
    """Makes the recorder's speech tags identical to the replay database's
    (two digest queries when nothing changed since the last time)."""
    digests = (await speech.digest(tconn), await speech.digest(rec.conn))
    if digests == rt.speech_digests:
        return None
    master = await speech.read_definitions(tconn, engine.target_catalog)
    counts = await speech.make_identical(rec, master)
    rt.speech_digests = (digests[0], await speech.digest(rec.conn))
    if any(counts.values()):
        log.info("speech_tags_synchronized", **counts)
    return counts
