"""The batch write: one transaction per batch on the replay database.

Media is already durable when this runs. Inside the transaction the sids of
the batch are locked (advisory, in a fixed order so two groups cannot
deadlock), what the target holds is read again and every plan is re-checked
against it: a concurrent group that delivered the same call first turns an
insert into a replace or a merge, never into a duplicate. All writes are set
operations over arrays, a handful of statements whatever the batch size.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from ..core import backoff
from ..core.model import COUPLE_COLUMNS, SourceCouple, TargetCouple
from ..core.pathsafety import is_inside
from ..core.plan import Action, decide, mark_for
from ..core.quality import Quality
from . import journal, reads


@dataclass(frozen=True, slots=True)
class NewFile:
    """A media file as the target will reference it."""
    cftype: str
    cfsize: int
    cfpath: str
    digest: str | None
    start_ts: dt.datetime | None
    stop_ts: dt.datetime | None
    copied: bool  # True: synchrod wrote it and owns it; False: linked in place


@dataclass(slots=True)
class Delivery:
    couple: SourceCouple
    quality: Quality
    planned: Action
    files: tuple[NewFile, ...] = ()


@dataclass(slots=True)
class Failure:
    couple: SourceCouple
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    source: str
    daemon: str
    voice_tags: bool
    max_attempts: int
    mark_erroneous: bool
    backoff_base: int
    owned_roots: tuple[str, ...]  # only files below these are ever removed


@dataclass(slots=True)
class Outcome:
    cplid: int
    sid: str
    outcome: str          # synchronized | not_used | erroneous | failed | skipped
    reason: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class Committed:
    marks: dict[int, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)   # copied, then unused: remove now
    replaced: list[str] = field(default_factory=list)   # scheduled in pending_unlink
    files: int = 0        # media files copied and now referenced
    bytes: int = 0
    run_id: int | None = None

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def absorb(self, part: "Committed") -> None:
        """Adds a later chunk of the same cycle."""
        self.marks.update(part.marks)
        self.outcomes.extend(part.outcomes)
        self.files += part.files
        self.bytes += part.bytes
        self.run_id = part.run_id or self.run_id


_LOCK_SIDS = """
SELECT count(pg_advisory_xact_lock(k))
  FROM (SELECT DISTINCT hashtextextended(s, 1414) AS k FROM unnest($1::text[]) s ORDER BY 1) q
"""
_NEXTVAL = "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)"
# Bulk inserts of fresh rows go through COPY (ids come from the tables' own
# sequences first, so no RETURNING order is relied upon).
_CALL_COLUMNS = ("id", "start_ts", "stop_ts", "length")
_COUPLE_INSERT_COLUMNS = ("id", "callid") + COUPLE_COLUMNS + ("cfcnt",)
_FILE_COLUMNS = ("cplid", "cftype", "cfsize", "cfpath", "digest", "start_ts", "stop_ts")
_RUN_CALL_COLUMNS = ("run_id", "source_cplid", "sid", "outcome", "reason", "detail")
_COUPLE_ARRAYS = """unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::int[],
       $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
       $13::bool[], $14::text[], $15::text[], $16::text[], $17::int[])"""
_UPDATE_COUPLES = f"""
UPDATE callrec.couples c
   SET start_ts = u.start_ts, stop_ts = u.stop_ts, length = u.length, callingnr = u.callingnr,
       originalcallednr = u.originalcallednr, finalcallednr = u.finalcallednr,
       callingpartyname = u.callingpartyname, calledpartyname = u.calledpartyname,
       problemstatus = u.problemstatus, description = u.description, protected = u.protected,
       mixed = u.mixed, state = u.state, cfcnt = u.cfcnt
  FROM {_COUPLE_ARRAYS} AS u(id, callid, start_ts, stop_ts, length, callingnr, originalcallednr,
       finalcallednr, callingpartyname, calledpartyname, problemstatus, description, protected,
       sid, mixed, state, cfcnt)
 WHERE c.id = u.id
"""
_DELETE_FILES = "DELETE FROM callrec.cfiles WHERE cplid = ANY($1::bigint[]) RETURNING cfpath"
_INSERT_EXTDATA = """
INSERT INTO callrec.couple_extdata (cplid, key, value)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING
"""
_INSERT_VOICE_TAGS = """
INSERT INTO callrec.voice_tags (cplid, tag, position_ms)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING
"""
_UPSERT_SYNCED = """
INSERT INTO synchrod.synced (source, source_cplid, source_callid, sid, target_cplid, mark)
SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])
ON CONFLICT (source, source_cplid) DO UPDATE
   SET source_callid = EXCLUDED.source_callid, sid = EXCLUDED.sid,
       target_cplid = EXCLUDED.target_cplid, mark = EXCLUDED.mark, synced_at = now()
"""
_CLEAR_ATTEMPTS = "DELETE FROM synchrod.attempts WHERE source = $1 AND source_cplid = ANY($2::bigint[])"
_UPSERT_ATTEMPTS = """
INSERT INTO synchrod.attempts (source, source_cplid, sid, attempts, next_try_at, last_reason, last_detail)
SELECT $1, u.id, u.sid, u.n,
       -- a call marked E waits for the operator, not for a clock
       coalesce(now() + make_interval(secs => u.delay), 'infinity'), u.reason, u.detail
  FROM unnest($2::bigint[], $3::text[], $4::int[], $5::int[], $6::text[], $7::text[])
       AS u(id, sid, n, delay, reason, detail)
ON CONFLICT (source, source_cplid) DO UPDATE
   SET attempts = EXCLUDED.attempts, next_try_at = EXCLUDED.next_try_at,
       last_reason = EXCLUDED.last_reason, last_detail = EXCLUDED.last_detail, updated_at = now()
"""
_SCHEDULE_UNLINK = """
INSERT INTO synchrod.pending_unlink (path) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING
"""
_INSERT_RUN = """
INSERT INTO synchrod.runs (source, daemon, started_at, finished_at, taken, synchronized, not_used,
       erroneous, failed, skipped, files, bytes, error)
VALUES ($1, $2, $3, now(), $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id
"""
_ADD_TO_RUN = """
UPDATE synchrod.runs
   SET finished_at = now(), taken = taken + $2, synchronized = synchronized + $3,
       not_used = not_used + $4, erroneous = erroneous + $5, failed = failed + $6,
       skipped = skipped + $7, files = files + $8, bytes = bytes + $9
 WHERE id = $1
"""
_UPSERT_CURSOR = """
INSERT INTO synchrod.source_state (source, resync_cursor_ts, resync_cursor_id) VALUES ($1, $2, $3)
ON CONFLICT (source) DO UPDATE
   SET resync_cursor_ts = EXCLUDED.resync_cursor_ts, resync_cursor_id = EXCLUDED.resync_cursor_id
"""


def _columns(rows: Sequence[tuple]) -> list[list]:
    """Row tuples to per-column lists, as unnest() wants them."""
    return [list(col) for col in zip(*rows)] if rows else []


class _Plan:
    """Accumulates the set operations of one batch."""

    def __init__(self) -> None:
        self.new_calls: list[tuple] = []            # (key, start, stop, length)
        self.new_couples: list[tuple[Delivery, int | str]] = []  # (delivery, call id or key)
        self.replaced: list[tuple[Delivery, TargetCouple]] = []
        self.meta: list[tuple[Delivery, int | None]] = []  # couple id (None: a new couple)
        self.synced: list[tuple[Delivery, int | None, str]] = []


async def commit_batch(conn: asyncpg.Connection, policy: Policy, deliveries: Sequence[Delivery],
                       failures: Sequence[Failure], skipped: Sequence[Failure],
                       started_at: dt.datetime, run_id: int | None = None) -> Committed:
    """``run_id``: the cycle's history row when an earlier chunk created it."""
    out = Committed(run_id=run_id)
    async with conn.transaction():
        await _write(conn, policy, deliveries, failures, skipped, started_at, out)
    return out


async def save_resync_cursor(conn: asyncpg.Connection, source: str,
                             cursor: tuple[dt.datetime, int]) -> None:
    await conn.execute(_UPSERT_CURSOR, source, *cursor)


async def _write(conn, policy, deliveries, failures, skipped, started_at, out):
    src = policy.source
    sids = sorted({d.couple.sid for d in deliveries})
    if sids:
        await conn.fetchval(_LOCK_SIDS, sids)
    current = await reads.couples_by_sid(conn, sids) if sids else {}
    ids = [d.couple.id for d in deliveries]
    recorded = await reads.synced_marks(conn, src, ids) if ids else {}
    callids = sorted({d.couple.callid for d in deliveries if d.couple.callid is not None})
    # source callid -> target callid, or the key of a call this batch creates
    known_calls: dict[int, int | str] = dict(await reads.target_calls(conn, src, callids)) if callids else {}

    plan = _Plan()
    # a source call whose couple already sits on the target joins that call
    for d in deliveries:
        t = current.get(d.couple.sid)
        if d.couple.callid is not None and d.couple.callid not in known_calls \
                and t is not None and t.callid is not None:
            known_calls[d.couple.callid] = t.callid

    for d in deliveries:
        c, t = d.couple, current.get(d.couple.sid)
        action = decide(d.quality, t)
        if action is not Action.MERGE and d.planned is Action.MERGE:
            # the target lost its copy since planning: nothing was copied, try next cycle
            out.outcomes.append(Outcome(c.id, c.sid, "skipped", "target_changed"))
            continue
        if action is Action.MERGE and d.planned is not Action.MERGE:
            out.orphaned.extend(f.cfpath for f in d.files if f.copied)
        if action is Action.INSERT:
            if c.callid is None:
                key = f"couple:{c.id}"
                plan.new_calls.append((key, c.start_ts, c.stop_ts, c.length))
            elif c.callid in known_calls:
                key = known_calls[c.callid]
            else:
                key = f"call:{c.callid}"
                plan.new_calls.append((key, c.call_start_ts or c.start_ts,
                                       c.call_stop_ts or c.stop_ts, c.call_length or c.length))
                known_calls[c.callid] = key
            plan.new_couples.append((d, key))
            plan.meta.append((d, None))
            plan.synced.append((d, None, "S"))
        else:
            if action is Action.REPLACE:
                plan.replaced.append((d, t))
            plan.meta.append((d, t.id))
            plan.synced.append((d, t.id, mark_for(action, recorded.get(c.id))))

    await _execute(conn, policy, plan, out)
    await _attempts(conn, policy, failures, out)
    for f in skipped:
        out.outcomes.append(Outcome(f.couple.id, f.couple.sid, "skipped", f.reason, f.detail))
    await _history(conn, policy, started_at, out)


async def _allocate(conn, table: str, n: int) -> list[int]:
    if n == 0:
        return []
    return [r[0] for r in await conn.fetch(_NEXTVAL, table, n)]


async def _execute(conn, policy: Policy, plan: _Plan, out: Committed) -> None:
    src = policy.source
    # calls
    call_ids = await _allocate(conn, "callrec.calls", len(plan.new_calls))
    resolved: dict[str, int] = {}
    for (key, *_), new_id in zip(plan.new_calls, call_ids):
        resolved[key] = new_id
    if plan.new_calls:
        await conn.copy_records_to_table(
            "calls", schema_name="callrec", columns=_CALL_COLUMNS,
            records=[(i, *r[1:]) for i, r in zip(call_ids, plan.new_calls)])

    def call_id(key: int | str) -> int:
        return resolved[key] if isinstance(key, str) else key

    # couples
    couple_ids = await _allocate(conn, "callrec.couples", len(plan.new_couples))
    target_of: dict[int, int] = {}  # source couple id -> target couple id
    rows = []
    for (d, key), new_id in zip(plan.new_couples, couple_ids):
        target_of[d.couple.id] = new_id
        rows.append((new_id, call_id(key)) + d.couple.column_values() + (len(d.files),))
    if rows:
        await conn.copy_records_to_table("couples", schema_name="callrec",
                                         columns=_COUPLE_INSERT_COLUMNS, records=rows)
    if plan.replaced:
        rows = [(t.id, t.callid) + d.couple.column_values() + (len(d.files),)
                for d, t in plan.replaced]
        await conn.execute(_UPDATE_COUPLES, *_columns(rows))
        old = [r["cfpath"] for r in await conn.fetch(_DELETE_FILES, [t.id for _, t in plan.replaced])]
        new_paths = {f.cfpath for d, _ in plan.replaced for f in d.files}
        out.replaced = sorted({p for p in old if p not in new_paths
                               and any(is_inside(root, p) for root in policy.owned_roots)})
        for d, t in plan.replaced:
            target_of[d.couple.id] = t.id

    # files
    file_rows = []
    for d in [d for d, _ in plan.new_couples] + [d for d, _ in plan.replaced]:
        for f in d.files:
            file_rows.append((target_of[d.couple.id], f.cftype, f.cfsize, f.cfpath, f.digest,
                              f.start_ts, f.stop_ts))
    if file_rows:
        await conn.copy_records_to_table("cfiles", schema_name="callrec", columns=_FILE_COLUMNS,
                                         records=file_rows)

    # metadata union
    ext_rows, tag_rows = [], []
    for d, tid in plan.meta:
        cid = tid if tid is not None else target_of[d.couple.id]
        ext_rows.extend((cid, k, v) for k, v in d.couple.extdata)
        if policy.voice_tags:
            tag_rows.extend((cid, tag, pos) for tag, pos in d.couple.voice_tags)
    if ext_rows:
        await conn.execute(_INSERT_EXTDATA, *_columns(ext_rows))
    if tag_rows:
        await conn.execute(_INSERT_VOICE_TAGS, *_columns(tag_rows))

    # origin and marks
    synced_rows = []
    for d, tid, mark in plan.synced:
        cid = tid if tid is not None else target_of[d.couple.id]
        synced_rows.append((d.couple.id, d.couple.callid, d.couple.sid, cid, mark))
        out.marks[d.couple.id] = mark
        out.outcomes.append(Outcome(d.couple.id, d.couple.sid,
                                    "synchronized" if mark == "S" else "not_used"))
    if synced_rows:
        await conn.execute(_UPSERT_SYNCED, src, *_columns(synced_rows))
        await conn.execute(_CLEAR_ATTEMPTS, src, [r[0] for r in synced_rows])

    # journal: files now referenced are no longer pending; replaced ones go
    copied = [f for d, _ in plan.new_couples + plan.replaced for f in d.files if f.copied]
    out.files, out.bytes = len(copied), sum(f.cfsize for f in copied)
    await journal.take_tickets(conn, [f.cfpath for f in copied])
    if out.replaced:
        await conn.execute(_SCHEDULE_UNLINK, out.replaced)


async def _attempts(conn, policy: Policy, failures: Sequence[Failure], out: Committed) -> None:
    if not failures:
        return
    previous = await reads.attempts(conn, policy.source, [f.couple.id for f in failures])
    rows = []
    for f in failures:
        n = previous.get(f.couple.id, 0) + 1
        delay: int | None = backoff.delay(n, policy.backoff_base)
        if backoff.gives_up(n, policy.max_attempts, policy.mark_erroneous):
            out.marks[f.couple.id] = "E"
            out.outcomes.append(Outcome(f.couple.id, f.couple.sid, "erroneous", f.reason, f.detail))
            delay = None
        else:
            out.outcomes.append(Outcome(f.couple.id, f.couple.sid, "failed", f.reason, f.detail))
        rows.append((f.couple.id, f.couple.sid, n, delay, f.reason, f.detail[:2000]))
    await conn.execute(_UPSERT_ATTEMPTS, policy.source, *_columns(rows))


async def _history(conn, policy: Policy, started_at: dt.datetime, out: Committed) -> None:
    if not out.outcomes:
        return
    counts = (len(out.outcomes), out.count("synchronized"), out.count("not_used"),
              out.count("erroneous"), out.count("failed"), out.count("skipped"), out.files, out.bytes)
    if out.run_id is None:
        out.run_id = await conn.fetchval(_INSERT_RUN, policy.source, policy.daemon, started_at,
                                         *counts, None)
    else:
        await conn.execute(_ADD_TO_RUN, out.run_id, *counts)
    # one row per call, even if a retry of this run listed a call twice
    rows = {o.cplid: (out.run_id, o.cplid, o.sid, o.outcome, o.reason, o.detail)
            for o in out.outcomes}
    await conn.copy_records_to_table("run_calls", schema_name="synchrod",
                                     columns=_RUN_CALL_COLUMNS, records=list(rows.values()))


_FORGET_ATTEMPTS = """
DELETE FROM synchrod.attempts
 WHERE source = $1 AND ($2::text[] IS NULL OR sid = ANY($2::text[]))
"""


async def forget_attempts(conn: asyncpg.Connection, source: str,
                          sids: Sequence[str] | None) -> int:
    """Resets the failure count and back-off of a source's calls (``retry``)."""
    status = await conn.execute(_FORGET_ATTEMPTS, source, list(sids) if sids else None)
    return int(status.split()[-1])
