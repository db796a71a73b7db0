"""One cycle of one source: load → plan → media → durable → commit → mark.

The order is the crash-safety contract (SPEC §3.7): media is durable before
the rows that reference it commit, the source is marked only after the
target commit, and files the target stopped using are removed last. Each
step is idempotent, so the next cycle repairs any interruption.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from dataclasses import dataclass, field

import structlog

from . import faults, media, recorder
from .core import filters, naming
from .core.model import VIDEO_TYPES, CFile, SourceCouple
from .core.pathsafety import is_inside, unsafe_reason
from .core.placement import Placer
from .core.plan import Action, decide
from .core.quality import quality
from .dbconn import UNREACHABLE, redact
from .engine import Engine, SameDatabaseError, SourceRuntime
from .replay import journal, reads
from .replay.writes import Committed, Delivery, Failure, NewFile, Policy, commit_batch, save_resync_cursor

log = structlog.get_logger("synchrod.cycle")


@dataclass
class CycleResult:
    source: str
    state: str = "ok"            # ok | idle | down | error | disabled
    taken: int = 0
    synchronized: int = 0
    not_used: int = 0
    erroneous: int = 0
    failed: int = 0
    skipped: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    run_id: int | None = None
    dry_run_plan: list[tuple[str, str]] = field(default_factory=list)  # (sid, action)

    @property
    def progressed(self) -> bool:
        """Something left the candidate set this cycle."""
        return self.synchronized + self.not_used + self.erroneous > 0


@dataclass
class _Prepared:
    couple: SourceCouple
    files: tuple[CFile, ...]
    action: Action


async def run_cycle(engine: Engine, rt: SourceRuntime, dry_run: bool = False) -> CycleResult:
    src = rt.cfg
    res = CycleResult(src.sysname)
    t0 = time.monotonic()
    bound = log.bind(source=src.sysname)
    rt.state = "running"
    try:
        await _cycle(engine, rt, res, dry_run, bound)
    except SameDatabaseError as exc:
        res.state, res.error = "error", str(exc)
    except UNREACHABLE as exc:
        res.state, res.error = "down", f"database unreachable: {redact(str(exc))}"
        await rt.drop()
    except media.TargetError as exc:
        res.state, res.error = "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - one source's fault must not stop the others
        bound.exception("cycle_failed")
        res.state, res.error = "error", redact(f"{type(exc).__name__}: {exc}")
        await rt.drop()
    finally:
        res.seconds = time.monotonic() - t0
        rt.state = "down" if res.state in ("down", "error") else "waiting"
        rt.last_error = res.error
    if res.state != "idle" or res.error:
        bound.info("cycle", state=res.state, taken=res.taken, synchronized=res.synchronized,
                   not_used=res.not_used, erroneous=res.erroneous, failed=res.failed,
                   skipped=res.skipped, files=res.files, bytes=res.bytes,
                   seconds=round(res.seconds, 3), error=res.error)
    return res


async def _cycle(engine: Engine, rt: SourceRuntime, res: CycleResult, dry_run: bool, log) -> None:
    cfg, src = engine.config, rt.cfg
    started_at = dt.datetime.now(dt.timezone.utc)
    problem = media.mount_problem(src.mount_path, src.require_mount)
    if problem:
        res.state, res.error = "down", problem
        return
    conn = await rt.connection(engine.target_identity)
    if cfg.synchro.manage_source_index and not rt.index_ready:
        rt.index_ready = await recorder.ensure_index(conn)

    async with engine.target_pool.acquire() as tconn:
        if not dry_run:
            await _repair(tconn, src.sysname, log)
        excluded = await reads.in_backoff(tconn, src.sysname)
        cursor = await reads.resync_cursor(tconn, src.sysname) if src.synchronize_already_synchronized else None
        if src.synchronize_already_synchronized and cursor is None:
            cursor = (recorder.MINUS_INFINITY, 0)

        batch = await recorder.load_batch(
            conn, earliest=filters.interval_start(src.interval, src.custom_interval_days,
                                                  dt.datetime.now(dt.timezone.utc)),
            only_finished=cfg.synchro.only_finished, only_processed=cfg.synchro.only_processed,
            without_streams=cfg.synchro.synchronize_couples_without_streams,
            excluded=excluded, limit=cfg.synchro.calls_per_period, resync_cursor=cursor)
        faults.point("after_load")
        res.taken = len(batch)
        if not batch:
            res.state = "idle"
            if cfg.synchro.synchronize_speech_tags and not dry_run:
                await sync_speech_tags(tconn, conn, src.sysname, log)
            return

        prepared = [_prepare(c, src, cfg.synchro.only_processed) for c in batch]
        current = await reads.couples_by_sid(tconn, [c.sid for c in batch])
        for p in prepared:
            p.action = decide(_quality(p), current.get(p.couple.sid))
        if dry_run:
            res.dry_run_plan = [(p.couple.sid, p.action.value) for p in prepared]
            return

        deliveries, failures, skipped = await _media(engine, rt, prepared, tconn, log)
        if failures and media.mount_problem(src.mount_path, src.require_mount):
            # the mount went away under us: not the calls' fault
            skipped += [Failure(f.couple, "source_unavailable", f.detail) for f in failures]
            failures = []
            res.error = "mount path became unavailable during the cycle"
        faults.point("after_sync")

        policy = Policy(src.sysname, engine.daemon_name, cfg.synchro.synchronize_voice_tags,
                        cfg.synchro.max_attempts, cfg.synchro.mark_erroneous,
                        cfg.synchro.backoff_base, engine.owned_roots())
        committed = await commit_batch(tconn, policy, deliveries, failures, skipped, started_at)
        faults.point("after_commit")

        await recorder.mark(conn, committed.marks)
        faults.point("after_mark")

        await _remove(tconn, committed.orphaned, committed.replaced, log)
        if cursor is not None:
            new_cursor = _advance_cursor(batch, committed, cursor)
            if new_cursor != cursor:
                await save_resync_cursor(tconn, src.sysname, new_cursor)
        if cfg.synchro.synchronize_speech_tags:
            await sync_speech_tags(tconn, conn, src.sysname, log)

    _count(res, committed)


def _prepare(c: SourceCouple, src, only_processed: bool) -> _Prepared:
    return _Prepared(c, filters.taken_files(c.files, src, only_processed), Action.MERGE)


def _quality(p: _Prepared):
    c = p.couple
    return quality(c.state, c.problemstatus, len(p.files), sum(f.cfsize for f in p.files), c.length)


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


# --- media phase ------------------------------------------------------------

async def _media(engine: Engine, rt: SourceRuntime, prepared: list[_Prepared], tconn, log):
    """Copies (or checks, in link mode) the media of every call that needs it,
    in the source's bounded pool; then makes the batch durable."""
    cfg, src = engine.config, rt.cfg
    loop = asyncio.get_running_loop()
    mount_real = os.path.realpath(src.mount_path)
    sha = cfg.synchro.verify == "sha256"
    deliveries: list[Delivery] = []
    failures: list[Failure] = []
    skipped: list[Failure] = []

    placers = {}
    if src.copy_files:
        usage = {p.path: media.fs_usage(p.path)
                 for p in engine.config.target.audio_paths + engine.config.target.video_paths}
        usage = {k: v for k, v in usage.items() if v is not None}
        placers = {"audio": Placer(cfg.target.audio_paths, usage, engine.balance_ledger),
                   "video": Placer(cfg.target.video_paths, usage, engine.balance_ledger)}

    jobs = []  # (prepared, [(cfile, dest or None)])
    for p in prepared:
        if p.action is Action.MERGE:
            deliveries.append(Delivery(p.couple, _quality(p), p.action))
            continue
        reason = next((media_reason for f in p.files
                       if (media_reason := _lexical(f.cfpath)) is not None), None)
        if reason:
            failures.append(Failure(p.couple, "unsafe_path", reason))
            continue
        if not src.copy_files:
            jobs.append((p, [(f, None) for f in p.files]))
            continue
        dests = []
        for f in p.files:
            placer = placers["video" if f.cftype in VIDEO_TYPES else "audio"]
            root = placer.place(f.cfsize)
            if root is None:
                break
            dests.append((f, os.path.join(root, naming.relpath(
                p.couple.start_ts, p.couple.sid, src.sysname, f.id, f.cfpath))))
        if len(dests) < len(p.files):
            skipped.append(Failure(p.couple, "storage_full", "no target path below its watermark"))
            continue
        jobs.append((p, dests))

    if src.copy_files:
        await journal.record_intents(tconn, src.sysname, [d for _, ds in jobs for _, d in ds])

    def work(p: _Prepared, dests):
        if src.copy_files:
            return _copy_call(p, dests, mount_real, src.mount_path, sha)
        return _link_call(p, mount_real, src.mount_path, sha)

    futures = [loop.run_in_executor(rt.pool, work, p, dests) for p, dests in jobs]
    results = await asyncio.gather(*futures, return_exceptions=True)
    faults.point("after_copy")
    roots_used = set()
    for (p, dests), result in zip(jobs, results):
        if isinstance(result, media.CallError):
            failures.append(Failure(p.couple, result.reason, result.detail))
        elif isinstance(result, media.TargetError):
            skipped.append(Failure(p.couple, result.reason, result.detail))
        elif isinstance(result, BaseException):
            raise result
        else:
            deliveries.append(Delivery(p.couple, _quality(p), p.action, result))
            roots_used.update(_root_of(d, engine.owned_roots()) for _, d in dests if d)
    for root in sorted(r for r in roots_used if r):
        await loop.run_in_executor(rt.pool, media.syncfs, root)
    return deliveries, failures, skipped


def _lexical(cfpath: str) -> str | None:
    reason = unsafe_reason(cfpath)
    return f"{cfpath!r}: {reason}" if reason else None


def _root_of(path: str, roots: tuple[str, ...]) -> str | None:
    return next((r for r in roots if is_inside(r, path)), None)


def _copy_call(p: _Prepared, dests, mount_real: str, mount_path: str, sha: bool) -> tuple[NewFile, ...]:
    # resolve every path first: a call with one unsafe path has nothing read
    for f, _ in dests:
        media.resolve_source(mount_real, mount_path, f.cfpath)
    out, written = [], []
    try:
        for f, dest in dests:
            fd, st = media.open_source(mount_real, mount_path, f.cfpath)
            try:
                media.check_size(f.cfpath, st.st_size, f.cfsize)
                written.append(dest)
                digest = media.copy_to(fd, st.st_size, dest, sha)
            finally:
                os.close(fd)
            if digest is not None:
                media.check_digest(f.cfpath, digest, f.digest)
            out.append(NewFile(f.cftype, st.st_size, dest, digest if sha else f.digest,
                               f.start_ts, f.stop_ts, copied=True))
    except BaseException:
        for dest in written:  # the journal would catch these too; tidy now
            media.remove(dest)
        raise
    return tuple(out)


def _link_call(p: _Prepared, mount_real: str, mount_path: str, sha: bool) -> tuple[NewFile, ...]:
    for f in p.files:
        media.resolve_source(mount_real, mount_path, f.cfpath)
    out = []
    for f in p.files:
        fd, st = media.open_source(mount_real, mount_path, f.cfpath)
        try:
            media.check_size(f.cfpath, st.st_size, f.cfsize)
            digest = media.hash_fd(fd, st.st_size) if sha else None
        finally:
            os.close(fd)
        if digest is not None:
            media.check_digest(f.cfpath, digest, f.digest)
        out.append(NewFile(f.cftype, st.st_size, mount_path.rstrip("/") + f.cfpath,
                           digest if sha else f.digest, f.start_ts, f.stop_ts, copied=False))
    return tuple(out)


# --- repair and removal ---------------------------------------------------------

async def _repair(tconn, source: str, log) -> None:
    """Removes what an interrupted cycle of this source left behind."""
    orphans, kept = await journal.leftovers(tconn, source)
    if kept:
        await journal.forget_pending(tconn, kept)
    if orphans:
        for path in orphans:
            media.remove(path)
        await journal.forget_pending(tconn, orphans)
        log.info("repair", removed_orphans=len(orphans))
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

async def sync_speech_tags(tconn, conn, source: str, log) -> dict | None:
    """Makes the recorder's speech tags identical to the replay database's."""
    want = await recorder.speech_tags_digest(tconn)
    have = await recorder.speech_tags_digest(conn)
    if want == have:
        return None
    master = await recorder.read_speech_tags(tconn)
    counts = await recorder.write_speech_tags(conn, master)
    log.info("speech_tags_synchronized", **counts)
    return counts
