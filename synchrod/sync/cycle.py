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

import asyncpg
import structlog

from .. import faults
from ..core import clock, filters, rowcheck
from ..core.catalog import int_limit
from ..core.chunks import chunks
from ..core.model import COUPLE_COLUMNS, SourceCouple
from ..core.plan import decide
from ..core.records import Candidate, Committed, Failure
from ..core.states import CallOutcome, CycleState, SourceEvent
from ..errors import (
    MediaStalled,
    SameDatabaseError,
    SchemaError,
    TargetError,
    TicketLost,
)
from ..fs import sourcefiles
from ..pg.connect import UNREACHABLE, redact
from ..recorder import Recorder
from ..replay import history, reads
from ..replay.writes import BatchWriter, save_resync_cursor
from .engine import Engine
from .finish import ChunkFinisher, repair
from .runtime import SourceRuntime
from .speech import sync_speech_tags
from .transfer import fill_unknown_sizes, transfer

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

    def add_counts(self, other: Counts) -> None:
        """Adds another's counts to these."""
        for f in fields(Counts):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class CycleResult(Counts):
    """How one cycle of one source ended, and what it did."""
    source: str
    state: CycleState = CycleState.OK
    error: str | None = None
    run_id: int | None = None
    dry_run_plan: list[tuple[str, str]] = field(default_factory=list)  # (sid, action)

    @property
    def progressed(self) -> bool:
        """Something left the candidate set this cycle."""
        return self.synchronized + self.not_used + self.erroneous > 0

    def count(self, committed: Committed) -> None:
        """Takes the counts of what the cycle's chunks committed so far."""
        for outcome in CallOutcome:
            setattr(self, outcome.value, committed.count(outcome))
        self.files, self.bytes, self.run_id = committed.files, committed.bytes, committed.run_id


async def run_cycle(engine: Engine, runtime: SourceRuntime, dry_run: bool = False,
                    stop: asyncio.Event | None = None,
                    still_owner: Callable[[str], bool] | None = None) -> CycleResult:
    """One cycle of one source; never raises for the source's faults (they
    end the cycle in state ``down`` or ``error``, recorded in the history).
    ``stop`` set, or the source's ownership lost (``still_owner``), during
    it: no new chunk is taken; the one in hand is still committed and marked."""
    src = runtime.config
    result = CycleResult(src.sysname)
    t0 = time.monotonic()
    bound = log.bind(source=src.sysname)
    if not runtime.check_resumed():
        result.state, result.error = CycleState.DOWN, runtime.last_error
        return result
    runtime.refresh_pool(engine.config.synchro.copy_workers)
    runtime.on(SourceEvent.CYCLE_STARTED)
    runtime.generation += 1
    started_at = clock.now()
    previous_error = runtime.last_error
    try:
        def keep_going() -> bool:  # paused: the chunk in hand finishes, no new one
            return not (stop is not None and stop.is_set()) and runtime.paused_by is None and \
                (still_owner is None or still_owner(src.sysname))
        await _cycle(engine, runtime, result, dry_run, bound, keep_going)
    except (SameDatabaseError, SchemaError) as exc:
        result.state, result.error = CycleState.ERROR, str(exc)
    except UNREACHABLE as exc:
        result.state, result.error = CycleState.DOWN, f"database unreachable: {redact(str(exc))}"
        await runtime.drop()
    except (TargetError, TicketLost) as exc:
        result.state, result.error = CycleState.ERROR, str(exc)
    except MediaStalled as exc:
        # nothing is an attempt: the calls in hand are taken again once the I/O returns
        result.state, result.error = CycleState.DOWN, f"stalled: {exc}"
        runtime.stalled_since = clock.now()
        bound.error("source_stalled", error=str(exc), busy_workers=len(runtime.inflight))
    except Exception as exc:  # noqa: BLE001 - one source's fault must not stop the others
        bound.exception("cycle_failed")
        result.state, result.error = CycleState.ERROR, redact(f"{type(exc).__name__}: {exc}")
        await runtime.drop()
    finally:
        result.seconds = time.monotonic() - t0
        _end(runtime, result)
    if not dry_run:
        await _record_end(engine, runtime, result, started_at, previous_error, bound)
    # one event per cycle per source, idle ones included (the daemon's heartbeat)
    bound.log(logging.WARNING if result.error else logging.INFO, "cycle",
              state=result.state, taken=result.taken, synchronized=result.synchronized,
              not_used=result.not_used, erroneous=result.erroneous, failed=result.failed,
              skipped=result.skipped, files=result.files, bytes=result.bytes,
              seconds=round(result.seconds, 3), error=result.error)
    for listener in engine.cycle_listeners:
        listener(runtime, result)
    return result


def _end(runtime: SourceRuntime, result: CycleResult) -> None:
    """The source's state and job after a cycle."""
    failed = result.state.failed
    runtime.on(SourceEvent.CYCLE_FAILED if failed else SourceEvent.CYCLE_SUCCEEDED)
    runtime.last_error = result.error
    runtime.last_cycle_at = clock.now()
    runtime.failures_in_row = runtime.failures_in_row + 1 if failed else 0
    if not failed:
        runtime.last_success_at = runtime.last_cycle_at
    runtime.last_result = result
    if result.taken:
        runtime.last_work = result


async def _record_end(engine: Engine, runtime: SourceRuntime, result: CycleResult,
                      started_at: dt.datetime, previous_error: str | None, log) -> None:
    """History of failed cycles: a run that committed calls keeps its error; a
    failed cycle without calls is kept when its error is new (a source down
    for a day is one row, not one per cycle)."""
    if not result.state.failed or not engine.schema_ready or engine.target_pool is None:
        return
    try:
        async with engine.target_pool.acquire(timeout=5) as conn:
            if result.run_id is not None:
                await history.end_run(conn, result.run_id, result.state, result.error)
            elif result.error != previous_error:
                result.run_id = await history.failed_cycle(conn, runtime.config.sysname,
                                                           engine.daemon_name, started_at,
                                                           result.state, result.error)
    except Exception as exc:  # noqa: BLE001 - the replay database may be what failed
        log.warning("history_not_recorded", error=redact(f"{type(exc).__name__}: {exc}"))


async def _cycle(engine: Engine, runtime: SourceRuntime, result: CycleResult, dry_run: bool,
                 log, keep_going: Callable[[], bool]) -> None:
    """The cycle's steps (run_cycle handles their faults): check the mount,
    connect, repair, load a batch in one query, reject what the target cannot
    hold, plan each call against what the target has, then in chunks copy the
    media while the previous chunk is made durable, committed and marked;
    last, the re-sync cursor, the speech definitions and the backlog.
    ``dry_run`` stops after the plan, changing nothing."""
    cfg, src = engine.config, runtime.config
    started_at = clock.now()
    problem = await runtime.media(cfg.synchro.io_timeout, sourcefiles.mount_problem,
                                  src.mount_path, src.require_mount)
    if problem:
        result.state, result.error = CycleState.DOWN, problem
        return
    recorder = await runtime.connection(engine)  # SchemaError: nothing is touched
    if cfg.synchro.manage_source_index and not runtime.index_ready and not dry_run:
        runtime.index_ready = await recorder.ensure_index()

    async with engine.target_pool.acquire() as replay_conn:
        # a dry run may meet a replay database synchrod has not set up yet
        bookkeeping = engine.schema_ready
        if not dry_run:
            await repair(replay_conn, src.sysname, log)
        excluded = await reads.in_backoff(replay_conn, src.sysname) if bookkeeping else []
        cursor = retry_due = None
        if src.synchronize_already_synchronized:
            cursor = (await reads.resync_cursor(replay_conn, src.sysname) if bookkeeping else None) \
                or clock.KEYSET_START
            retry_due = await reads.retry_due(replay_conn, src.sysname) if bookkeeping else []

        runtime.set_phase("load")
        earliest = filters.interval_start(src.interval, src.custom_interval_days, clock.now())
        batch = await recorder.load_batch(
            earliest=earliest,
            only_finished=cfg.synchro.only_finished, only_processed=cfg.synchro.only_processed,
            without_streams=cfg.synchro.synchronize_couples_without_streams,
            excluded=excluded, limit=cfg.synchro.calls_per_period,
            voice_tags=cfg.synchro.synchronize_voice_tags, resync_cursor=cursor,
            retry_due=retry_due or ())
        faults.point("after_load", src.sysname)
        result.taken = len(batch)
        if not batch:
            result.state = CycleState.IDLE
            if not excluded:  # nothing waits, not even in back-off: no query needed
                runtime.backlog, runtime.oldest_pending_at = 0, None
            else:
                await _measure_backlog(recorder, runtime, cfg, earliest)
            if cfg.synchro.synchronize_speech_tags and not dry_run:
                await sync_speech_tags(engine, replay_conn, recorder, runtime, log)
            return

        runtime.set_phase("compare")
        # a value the replay database cannot take fails its own call only
        rejected, batch = _reject_unfit(engine, recorder, src, batch)
        candidates = [Candidate(c, filters.taken_files(c.files, src, cfg.synchro.only_processed))
                      for c in batch]
        await fill_unknown_sizes(runtime, candidates, cfg.synchro.io_timeout)
        sids = [c.sid for c in batch]
        current = await reads.couples_by_sid(replay_conn, sids) if batch else {}
        # a call pruned or deleted on the target on purpose is never copied back
        gone = await reads.tombstoned(replay_conn, sids) if bookkeeping else set()
        for p in candidates:
            p.action = decide(p.quality(), current.get(p.couple.sid), p.couple.sid in gone)
        if dry_run:
            result.dry_run_plan = [(rowcheck.printable(f.couple.sid), f"reject ({f.reason})")
                                   for f in rejected]
            result.dry_run_plan += [(p.couple.sid, p.action.value) for p in candidates]
            return

        writer = BatchWriter(src.sysname, engine.daemon_name, cfg.synchro.max_attempts,
                             cfg.synchro.mark_erroneous, cfg.synchro.backoff_base,
                             engine.owned_roots(), runtime.statements, engine.target_catalog)
        committed = Committed()
        # Pipelined: while one chunk is made durable, committed and marked (on
        # a second connection), the next chunk's media is being copied.
        async with engine.target_pool.acquire() as finish_conn:
            finisher = ChunkFinisher(runtime, recorder, finish_conn, writer, started_at,
                                     cfg.synchro.io_timeout, committed, result)
            await _pipeline(engine, runtime, finisher, candidates, rejected, current, replay_conn,
                            keep_going)

        if cursor is not None:
            new_cursor = _advance_cursor(batch, committed, cursor)
            if new_cursor != cursor:
                await save_resync_cursor(replay_conn, src.sysname, new_cursor)
        if committed.missing_phrases:
            log.warning("voice_tag_phrases_missing", phrases=sorted(committed.missing_phrases)[:20],
                        count=len(committed.missing_phrases),
                        hint="voice tags whose phrase the replay database lacks were not copied")
        if cfg.synchro.synchronize_speech_tags:
            await sync_speech_tags(engine, replay_conn, recorder, runtime, log)
        await _measure_backlog(recorder, runtime, cfg, earliest)


async def _pipeline(engine: Engine, runtime: SourceRuntime, finisher: ChunkFinisher,
                    candidates: list[Candidate], rejected: list[Failure], current: dict,
                    replay_conn: asyncpg.Connection, keep_going: Callable[[], bool]) -> None:
    """Copies chunk after chunk while the finisher completes the previous one;
    the rejected calls are recorded with the first chunk. Interrupted, the
    chunk in hand still commits and marks."""
    pending: asyncio.Task | None = None
    try:
        for chunk in chunks(candidates, _call_of, runtime.config.copy_files) or [[]]:
            if not keep_going():
                break  # stopping or no longer the owner: the chunk in hand finishes
            runtime.set_phase("copy")
            moved = await transfer(engine, runtime, chunk, current, replay_conn)
            moved.failures = rejected + moved.failures
            rejected = []
            if pending is not None:
                await pending
            pending = asyncio.create_task(finisher.finish(moved))
    except BaseException:
        if pending is not None:
            await asyncio.wait([pending])
        marking = finisher.marking
        if marking is not None:   # the chunk in hand is marked even so
            await asyncio.wait([marking])
            if not marking.cancelled():
                marking.exception()   # heard: the error in flight is the one raised
        raise
    if pending is not None:
        await pending
    await finisher.flush()


def _reject_unfit(engine: Engine, recorder: Recorder, src, batch: list[SourceCouple]):
    """(failures, the rest): calls holding a value the replay database cannot take."""
    target = engine.target_catalog
    limits = {c: lim for c in COUPLE_COLUMNS if (lim := int_limit(target, "couples", c))}
    rejected, fit = [], []
    for c in batch:
        found = rowcheck.problem(c, source_codec=recorder.wire.codec if recorder.wire else "UTF-8",
                                 target_codec=target.text_codec, target_encoding=target.encoding,
                                 link_paths=not src.copy_files, limits=limits)
        if found:
            rejected.append(Failure(c, *found))
        else:
            fit.append(c)
    return rejected, fit


async def _measure_backlog(recorder: Recorder, runtime: SourceRuntime, cfg, earliest) -> None:
    runtime.backlog, runtime.oldest_pending_at = await recorder.backlog(
        earliest=earliest, only_finished=cfg.synchro.only_finished,
        only_processed=cfg.synchro.only_processed,
        without_streams=cfg.synchro.synchronize_couples_without_streams)


def _call_of(candidate: Candidate) -> int | None:
    return candidate.couple.callid


def _advance_cursor(batch: list[SourceCouple], committed: Committed, cursor):
    """Moves the re-sync cursor over the leading calls that are settled."""
    done = {o.cplid for o in committed.outcomes if o.outcome.settled}
    for c in batch:
        if c.synchronized is not None and c.id not in done:
            break
        cursor = max(cursor, (c.start_ts, c.id))
    return cursor
