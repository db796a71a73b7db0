"""Removing target calls on request (``synchrod purge``, SPEC §9): the
selected couples' media (or the couples themselves), batch by batch, each
batch committed before its files are unlinked; a dry run changes nothing at
all, in the database or on disk."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from ..fs import copying
from ..replay import deletions, journal

BATCH = 500   # couples per transaction


@dataclass
class PurgeLine:
    """One call removed (or that a dry run would remove)."""
    sid: str
    start_ts: dt.datetime
    files: int
    bytes: int
    couple_id: int = 0


@dataclass
class PurgeReport:
    """What a purge did (or would do)."""
    removed: list[PurgeLine] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)   # skipped
    not_archived: list[str] = field(default_factory=list)   # skipped: the archive task has not
    missing: list[str] = field(default_factory=list)     # sids named that no couple has
    position: tuple[dt.datetime, int] = deletions.START  # the keyset position it reached
    recd_files: int = 0      # protected calls' RECD files removed (automatic pruning)
    recd_bytes: int = 0

    @property
    def files(self) -> int:
        """Media files of the calls removed."""
        return sum(line.files for line in self.removed)

    @property
    def bytes(self) -> int:
        """Their bytes, as the cfiles rows said."""
        return sum(line.bytes for line in self.removed)

    @property
    def freed(self) -> int:
        """Every byte removed: the calls' and the protected calls' RECD files."""
        return self.bytes + self.recd_bytes


async def purge(conn: asyncpg.Connection, *, before: dt.datetime | None = None,
                sids: Sequence[str] | None = None, source: str | None = None,
                metadata: bool = False, dry_run: bool = False, reason: str = "cli",
                requested_by: str | None = None, comment: str | None = None,
                owned_roots: Sequence[str] = (), max_calls: int | None = None,
                roots: Sequence[str] | None = None,
                bytes_wanted: int | None = None,
                after: tuple[dt.datetime, int] = deletions.START,
                protected_recd: bool = False,
                require_archived: str | None = None) -> PurgeReport:
    """Removes the media of the target calls started before ``before`` (or
    with one of ``sids``), of ``source`` only when given; with ``metadata``
    the couples too. Protected couples are skipped and counted. Every removed
    call is audited and tombstoned (``replay.deletions``); its files are
    unlinked once its batch committed (a crash in between leaves them to the
    next repair). ``dry_run``: only the report. Automatic pruning bounds a
    round: at most ``max_calls`` calls, only those with a file below
    ``roots`` (one filesystem's paths), and no more once ``bytes_wanted``
    bytes are freed. ``after``: start past this keyset position (where an
    earlier round ended), reported back in ``position``. ``protected_recd``
    (automatic pruning): protected calls lose their RECD files, as CallREC
    allows, and keep the rest. ``require_archived`` (automatic pruning):
    only calls this archive task has archived whole go."""
    report = PurgeReport(position=after)
    while max_calls is None or len(report.removed) < max_calls:
        if bytes_wanted is not None and report.freed >= bytes_wanted:
            break
        page = await deletions.candidates(conn, before=before, sids=sids, source=source,
                                          metadata=metadata, limit=BATCH, after=after, roots=roots,
                                          require_archived=require_archived)
        if not page:
            break
        after = (page[-1].start_ts, page[-1].id)
        report.position = after
        listed = [c for c in page if c.protected]
        report.protected += [c.sid for c in listed]
        report.not_archived += [c.sid for c in page if c.not_archived and not c.protected]
        todo = [c for c in page if not c.held]
        sizes = await deletions.sizes(conn, [c.id for c in todo])
        todo = _within(todo, sizes, max_calls and max_calls - len(report.removed),
                       bytes_wanted and bytes_wanted - report.freed)
        ids = [c.id for c in todo] + ([c.id for c in listed] if protected_recd else [])
        if dry_run:
            report.removed += [PurgeLine(c.sid, c.start_ts, *sizes.get(c.id, (0, 0)), c.id)
                               for c in todo]
        elif ids:
            done = await deletions.prune_batch(conn, ids, reason=reason,
                                               requested_by=requested_by, comment=comment,
                                               metadata=metadata, owned_roots=owned_roots,
                                               protected_recd=protected_recd,
                                               require_archived=require_archived)
            already = {c.sid for c in listed}
            report.protected += [s for s in done.protected if s not in already]  # since listed
            report.not_archived += done.not_archived
            report.recd_files += done.recd_files
            report.recd_bytes += done.recd_bytes
            removed = set(done.sids)
            report.removed += [PurgeLine(c.sid, c.start_ts, *sizes.get(c.id, (0, 0)), c.id)
                               for c in todo if c.sid in removed]
            await unlink(conn, done.unlink)
        if sids is not None:
            break   # every named sid is in the one page
    if sids is not None:
        found = {line.sid for line in report.removed} | set(report.protected)
        report.missing = sorted(set(sids) - found)
    return report


def _within(todo: list, sizes: dict[int, tuple[int, int]], calls: int | None,
            wanted: int | None) -> list:
    """The leading candidates within a round's bounds: ``calls`` at most, and
    no more once ``wanted`` bytes are reached (the one reaching it included)."""
    out, freed = [], 0
    for c in todo:
        if calls is not None and len(out) >= calls:
            break
        if wanted is not None and freed >= wanted:
            break
        out.append(c)
        freed += sizes.get(c.id, (0, 0))[1]
    return out


async def unlink(conn: asyncpg.Connection, paths: Sequence[str] | None) -> None:
    """Removes the scheduled files no committed row uses any more (in a
    thread: a target filesystem may be slow), then forgets them; ``None``:
    every scheduled file (what a crash left)."""
    if paths is not None and not paths:
        return
    gone, still_used = await journal.unlinkable(conn, list(paths) if paths is not None else None)
    await asyncio.to_thread(lambda: [copying.remove(p) for p in gone])
    await journal.forget_unlink(conn, gone + still_used)
