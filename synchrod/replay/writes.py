"""The batch write: one transaction per batch on the replay database.

Media is already durable when this runs. Inside the transaction the sids of
the batch are locked (advisory, in a fixed order so two groups cannot
deadlock), what the target holds is read again and every plan is re-checked
against it: a concurrent group that delivered the same call first turns an
insert into a replace or a merge, never into a duplicate. All writes are set
operations over arrays, a handful of statements whatever the batch size;
which columns they name was decided from both catalogs
(:mod:`synchrod.replay.statements`).

A row the replay database refuses (a value its domain or column cannot
hold, a trigger's exception) fails only its own call: the batch is split in
halves and committed again until the refused call stands alone.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog

from ..core import backoff
from ..core.catalog import Catalog
from ..core.model import CFTYPE_BITS, SourceCouple, TargetCouple
from ..core.pathsafety import is_inside
from ..core.plan import Action, decide, mark_for
from ..core.records import Committed, Delivery, Failure, Outcome
from ..core.rowcheck import printable, storable
from ..core.states import CallOutcome
from ..pg import connect as dbconn
from . import journal, reads
from . import statements as sql
from .statements import BatchStatements

log = structlog.get_logger("synchrod.writes")

# What a refused row raises: a value out of range or not in a domain, a
# check, a trigger's RAISE. Anything else (a lost connection) fails the batch.
ROW_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.RaiseError)


@dataclass(frozen=True, slots=True)
class BatchWriter:
    """Writes one source's chunks to the replay database, shaped by the
    settings that decide marks, attempts and what may be removed."""
    source: str
    daemon: str
    max_attempts: int
    mark_erroneous: bool
    backoff_base: int
    owned_roots: tuple[str, ...]  # only files below these are ever removed
    statements: BatchStatements
    target: Catalog

    async def commit(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery],
                     failures: Sequence[Failure], skipped: Sequence[Failure],
                     started_at: dt.datetime, run_id: int | None = None) -> Committed:
        """Writes a chunk of deliveries, failures and skipped calls in one
        transaction (``run_id``: the cycle's history row when an earlier chunk
        created it). A row the replay database refuses fails only its call: the
        chunk is committed again in halves until that call stands alone, and it
        is recorded as a failure (reason ``target_refused``)."""
        out = Committed(run_id=run_id)
        try:
            async with conn.transaction():
                await _write(conn, self, deliveries, failures, skipped, started_at, out)
            return out
        except ROW_ERRORS as exc:
            if not deliveries:
                raise  # no call's row: the fault is synchrod's bookkeeping
            if len(deliveries) == 1:
                d = deliveries[0]
                refused = Failure(d.couple, "target_refused",
                                  f"the replay database refused this call: {type(exc).__name__}: {exc}")
                part = await self.commit(conn, [], [*failures, refused], skipped, started_at, run_id)
                part.orphaned.extend(f.cfpath for f in d.files if f.copied)
                return part
        half = len(deliveries) // 2
        first = await self.commit(conn, deliveries[:half], failures, skipped, started_at, run_id)
        second = await self.commit(conn, deliveries[half:], [], [], started_at, first.run_id)
        first.absorb(second)
        return first


def _columns(rows: Sequence[tuple]) -> list[list]:
    """Row tuples to per-column lists, as unnest() wants them."""
    return [list(col) for col in zip(*rows)] if rows else []


@dataclass
class _NewCall:
    key: str
    couples: list[SourceCouple] = field(default_factory=list)


@dataclass
class _WriteSet:
    """Accumulates the set operations of one batch."""
    new_calls: dict[str, _NewCall] = field(default_factory=dict)
    joined: dict[int, list[SourceCouple]] = field(default_factory=dict)  # existing target call -> couples
    new_couples: list[tuple[Delivery, int | str]] = field(default_factory=list)  # (delivery, call id or key)
    replaced: list[tuple[Delivery, TargetCouple]] = field(default_factory=list)
    merged: list[tuple[Delivery, TargetCouple]] = field(default_factory=list)
    meta: list[tuple[Delivery, int | None]] = field(default_factory=list)  # couple id (None: a new couple)
    synced: list[tuple[Delivery, int | None, str]] = field(default_factory=list)


async def save_resync_cursor(conn: asyncpg.Connection, source: str,
                             cursor: tuple[dt.datetime, int]) -> None:
    """Remembers how far re-synchronisation of already synchronized calls went."""
    await conn.execute(sql.UPSERT_CURSOR, source, *cursor)


async def _write(conn, writer: BatchWriter, deliveries, failures, skipped, started_at, out: Committed):
    """In the batch transaction: locks the chunk's sids, re-reads the target, re-decides
    every plan (a merge whose target copy vanished is skipped, ``target_changed``), then
    writes rows, attempts, skipped outcomes and the run's history into ``out``."""
    src = writer.source
    sids = sorted({d.couple.sid for d in deliveries})
    if sids:
        await conn.fetchval(sql.LOCK_SIDS, sids)
    current = await reads.couples_by_sid(conn, sids) if sids else {}
    tombstoned = await reads.tombstoned(conn, sids)
    recorded = await reads.synced_marks(conn, src, [(d.couple.id, d.couple.sid) for d in deliveries]) \
        if deliveries else {}
    # the target calls of the other couples of each source call (SPEC §3.5)
    # (a sibling whose sid the target cannot even hold is not there)
    siblings = sorted({s for d in deliveries for s in d.couple.call_sids
                       if storable(s, writer.target.text_codec)})
    sibling_calls = await reads.calls_of_sids(conn, siblings) if siblings else {}

    writes = _WriteSet()
    keys: dict[str, int | str] = {}   # source call -> target call id, or a new call's key
    for d in deliveries:
        c, t = d.couple, current.get(d.couple.sid)
        action = decide(d.quality, t, c.sid in tombstoned)
        if action is not Action.MERGE and d.planned is Action.MERGE:
            # the target lost its copy since planning: nothing was copied, try next cycle
            out.outcomes.append(Outcome(c.id, c.sid, CallOutcome.SKIPPED, "target_changed"))
            continue
        if action is Action.MERGE and d.planned is not Action.MERGE:
            out.orphaned.extend(f.cfpath for f in d.files if f.copied)
        if action is Action.INSERT:
            key = _target_call(c, keys, sibling_calls, writes)
            writes.new_couples.append((d, key))
            writes.meta.append((d, None))
            writes.synced.append((d, None, "S"))
        elif t is None:   # pruned and deleted on the target: never copied back, nothing to merge
            out.marks[c.id] = (c.sid, "N")
            out.outcomes.append(Outcome(c.id, c.sid, CallOutcome.NOT_USED, "tombstoned"))
        else:
            (writes.replaced if action is Action.REPLACE else writes.merged).append((d, t))
            writes.meta.append((d, t.id))
            writes.synced.append((d, t.id, mark_for(action, recorded.get(c.id))))

    await _execute(conn, writer, writes, out)
    await _attempts(conn, writer, failures, out)
    codec = writer.target.text_codec
    for f in skipped:
        out.outcomes.append(Outcome(f.couple.id, printable(f.couple.sid, codec), CallOutcome.SKIPPED, f.reason,
                                    printable(f.detail, codec)))
    await _history(conn, writer, started_at, out)


def _target_call(c: SourceCouple, keys: dict, sibling_calls: dict[str, int], writes: _WriteSet) -> int | str:
    """The target call a new couple joins: the one holding another couple of
    its source call (on the target, or new in this batch), else a new call."""
    skey = f"call:{c.callid}" if c.callid is not None else f"couple:{c.id}"
    found = keys.get(skey)
    if found is None:
        known = [sibling_calls[s] for s in c.call_sids if s in sibling_calls]
        found = min(known) if known else skey
        keys[skey] = found
    if isinstance(found, str):
        writes.new_calls.setdefault(found, _NewCall(found)).couples.append(c)
    else:
        writes.joined.setdefault(found, []).append(c)
    return found


async def _allocate(conn, st: BatchStatements, what: str, n: int) -> list[int | None]:
    """``n`` new ids from CallREC's id function (else the column default);
    None where the target has no such column."""
    if n == 0:
        return []
    if what not in st.alloc:
        return [None] * n
    return [r[0] for r in await conn.fetch(st.alloc[what], n)]


async def _execute(conn, writer: BatchWriter, writes: _WriteSet, out: Committed) -> None:
    """Writes the chunk as set operations: new and joined calls, new couples, replacements
    (old files below owned roots scheduled for removal), protection, files, metadata, synced
    marks; then takes the copies' tickets (raises TicketLost when one is gone)."""
    st = writer.statements
    # CallREC's triggers (and foreign keys) run a few cached statements per
    # row: with synchrod's session-wide custom plans they would be planned
    # again for every row, twice their cost. The writes take PostgreSQL's
    # default; the lookups above keep custom plans (see dbconn).
    await conn.execute(dbconn.WRITE_PLANS)
    # calls: new ones (their times and counts are the triggers' where they keep them)
    call_ids = await _allocate(conn, st, "calls.id", len(writes.new_calls))
    resolved = dict(zip(writes.new_calls, call_ids))
    if writes.new_calls:
        await conn.copy_records_to_table(
            "calls", schema_name="callrec", columns=st.call_columns,
            records=[_call_row(st, resolved[key], call) for key, call in writes.new_calls.items()])

    def call_id(key: int | str) -> int:
        return resolved[key] if isinstance(key, str) else key

    # couples
    couple_ids = await _allocate(conn, st, "couples.id", len(writes.new_couples))
    target_of: dict[int, int] = {}  # source couple id -> target couple id
    rows = []
    for (d, key), new_id in zip(writes.new_couples, couple_ids):
        target_of[d.couple.id] = new_id
        rows.append(_couple_row(st, new_id, call_id(key), d))
    if rows:
        await conn.copy_records_to_table("couples", schema_name="callrec", columns=st.couple_copy,
                                         records=rows)
    if writes.joined and st.join_calls:
        await conn.execute(st.join_calls, *_columns([_joined_row(i, cs) for i, cs in writes.joined.items()]))
    if writes.replaced:
        # the old files go first: a replacement may carry protection, and a
        # protected couple's files can no longer be deleted (CallREC's trigger)
        old = [r[0] for r in await conn.fetch(sql.DELETE_FILES, [t.id for _, t in writes.replaced])]
        rows = [(t.id, *d.couple.column_values(st.couple_columns), *_derived(st, d))
                + ((bool(d.couple.protected),) if st.has_protected else ())
                for d, t in writes.replaced]
        await conn.execute(st.update_couples, *_columns(rows))
        new_paths = {f.cfpath for d, _ in writes.replaced for f in d.files}
        out.replaced = sorted({p for p in old if p not in new_paths
                               and any(is_inside(root, p) for root in writer.owned_roots)})
        for d, t in writes.replaced:
            target_of[d.couple.id] = t.id
    protect = [t.id for d, t in writes.merged if d.couple.protected and not t.protected]
    if protect and st.protect:
        await conn.execute(st.protect, protect)

    await _insert_files(conn, st, [(target_of[d.couple.id], d) for d, _ in writes.new_couples + writes.replaced])
    await _union_metadata(conn, writer, writes, target_of, out)

    # origin and marks
    synced_rows = []
    for d, tid, mark in writes.synced:
        cid = tid if tid is not None else target_of[d.couple.id]
        synced_rows.append((d.couple.id, d.couple.callid, d.couple.sid, cid, mark))
        out.marks[d.couple.id] = (d.couple.sid, mark)
        out.outcomes.append(Outcome(d.couple.id, d.couple.sid,
                                    CallOutcome.SYNCHRONIZED if mark == "S" else CallOutcome.NOT_USED))
    if synced_rows:
        await conn.execute(sql.UPSERT_SYNCED, writer.source, *_columns(synced_rows))
        await conn.execute(sql.CLEAR_ATTEMPTS, writer.source, [r[0] for r in synced_rows])

    # journal: files now referenced are no longer pending; replaced ones go
    copied = [f for d, _ in writes.new_couples + writes.replaced for f in d.files if f.copied]
    out.files, out.bytes = len(copied), sum(f.cfsize for f in copied)
    await journal.take_tickets(conn, [f.cfpath for f in copied])
    if out.replaced:
        await conn.execute(sql.SCHEDULE_UNLINK, out.replaced)


def _call_row(st: BatchStatements, call_id: int, call: _NewCall) -> tuple:
    first = call.couples[0]
    values = {"id": call_id, "cplcnt": first.call_cplcnt if first.call_cplcnt is not None
              else len(call.couples),
              "start_ts": first.call_start_ts or min(c.start_ts for c in call.couples),
              "stop_ts": first.call_stop_ts or max(c.stop_ts for c in call.couples),
              "realcplcnt": len(call.couples)}
    values["length"] = first.call_length if first.call_length is not None else \
        int((values["stop_ts"] - values["start_ts"]).total_seconds())
    return tuple(values[c] for c in st.call_columns)


def _joined_row(call_id: int, couples: list[SourceCouple]) -> tuple:
    cplcnt = max((c.call_cplcnt for c in couples if c.call_cplcnt is not None), default=None)
    return (call_id, cplcnt, min(c.start_ts for c in couples), max(c.stop_ts for c in couples),
            len(couples))


def _derived(st: BatchStatements, d: Delivery) -> tuple:
    """cfcnt and cftypes, where synchrod keeps them (no trigger does)."""
    out = []
    for column in sorted(st.synchrod_couples):
        if column == "cfcnt":
            out.append(len(d.files))
        else:
            mask = 0
            for f in d.files:
                mask |= CFTYPE_BITS.get(f.cfile.cftype, 0)
            out.append(asyncpg.BitString.from_int(mask, 32))
    return tuple(out)


def _couple_row(st: BatchStatements, new_id: int, call_id: int, d: Delivery) -> tuple:
    c = d.couple
    protected = (c.protected,) if st.has_protected else ()
    return (new_id, call_id, *c.column_values(st.couple_columns), *protected, *_derived(st, d))


async def _insert_files(conn, st: BatchStatements, couples: list[tuple[int, Delivery]]) -> None:
    files = [(cplid, f) for cplid, d in couples for f in d.files]
    if not files:
        return
    ids = await _allocate(conn, st, "cfiles.id", len(files))
    # files sharing a stream group on the source share one new group
    groups = sorted({(cplid, f.cfile.sgid) for cplid, f in files if f.cfile.sgid is not None})
    loose = [i for i, (_, f) in enumerate(files) if f.cfile.sgid is None]
    new_groups = await _allocate(conn, st, "cfiles.sgid", len(groups) + len(loose))
    group_of = dict(zip(groups, new_groups))
    loose_of = dict(zip(loose, new_groups[len(groups):]))
    rows = []
    for i, ((cplid, f), new_id) in enumerate(zip(files, ids)):
        sgid = loose_of[i] if i in loose_of else group_of[(cplid, f.cfile.sgid)]
        head = tuple(v for c, v in (("id", new_id), ("sgid", sgid)) if c in st.file_copy)
        extra = {c: getattr(f.cfile, c) for c in st.file_columns}
        extra["digest"] = f.digest
        rows.append(head + (cplid, f.cfile.cftype, f.cfsize, f.cfpath)
                    + tuple(extra[c] for c in st.file_columns))
    await conn.copy_records_to_table("cfiles", schema_name="callrec", columns=st.file_copy,
                                     records=rows)


async def _union_metadata(conn, writer: BatchWriter, writes: _WriteSet, target_of: dict[int, int],
                          out: Committed) -> None:
    st = writer.statements
    ext_rows, tag_rows = [], []
    for d, tid in writes.meta:
        cid = tid if tid is not None else target_of[d.couple.id]
        ext_rows.extend((cid, e.key, e.value, e.created_ts) for e in d.couple.extdata)
        if st.insert_voice_tags:
            tag_rows.extend((cid, *v) for v in d.couple.voice_tags)
    if ext_rows:
        await conn.execute(st.insert_extdata, *_columns(ext_rows))
    if tag_rows:
        missing = await conn.fetch(st.insert_voice_tags, *_columns(tag_rows))
        out.missing_phrases |= {r[0] for r in missing}


async def _attempts(conn, writer: BatchWriter, failures: Sequence[Failure], out: Committed) -> None:
    if not failures:
        return
    codec = writer.target.text_codec  # what failed may be what the target cannot hold
    previous = await reads.attempts(conn, writer.source,
                                    [(f.couple.id, printable(f.couple.sid, codec)) for f in failures])
    rows = []
    for f in failures:
        sid = printable(f.couple.sid, codec)
        n = previous.get(f.couple.id, 0) + 1
        delay: int | None = backoff.delay(n, writer.backoff_base)
        detail = printable(f.detail, codec)
        if backoff.gives_up(n, writer.max_attempts, writer.mark_erroneous):
            out.marks[f.couple.id] = (f.couple.sid, "E")
            out.outcomes.append(Outcome(f.couple.id, sid, CallOutcome.ERRONEOUS, f.reason, detail))
            delay = None
        else:
            out.outcomes.append(Outcome(f.couple.id, sid, CallOutcome.FAILED, f.reason, detail))
        rows.append((f.couple.id, sid, n, delay, f.reason, detail[:2000]))
    await conn.execute(sql.UPSERT_ATTEMPTS, writer.source, *_columns(rows))


async def _history(conn, writer: BatchWriter, started_at: dt.datetime, out: Committed) -> None:
    if not out.outcomes:
        return
    counts = (len(out.outcomes), out.count(CallOutcome.SYNCHRONIZED), out.count(CallOutcome.NOT_USED),
              out.count(CallOutcome.ERRONEOUS), out.count(CallOutcome.FAILED), out.count(CallOutcome.SKIPPED), out.files, out.bytes)
    if out.run_id is None:
        out.run_id = await conn.fetchval(sql.INSERT_RUN, writer.source, writer.daemon, started_at,
                                         *counts, None)
    else:
        await conn.execute(sql.ADD_TO_RUN, out.run_id, *counts)
    # one row per call, even if a retry of this run listed a call twice
    rows = {o.cplid: (out.run_id, o.cplid, o.sid, o.outcome, o.reason, o.detail)
            for o in out.outcomes}
    await conn.copy_records_to_table("run_calls", schema_name="synchrod",
                                     columns=sql.RUN_CALL_COLUMNS, records=list(rows.values()))
