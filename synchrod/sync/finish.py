"""The end of a chunk and the repair of interrupted ones (SPEC §3.7):
durable → commit → remove → mark (the marks overlapping the next chunk's
commit), and the removal of copies no committed row uses. Every step is
idempotent, so the next cycle completes whatever a crash cut short."""
from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from .. import faults
from ..core.records import Committed, Failure, Transferred
from ..errors import TicketLost
from ..fs import copying, sourcefiles
from ..recorder import Recorder
from ..replay import journal
from ..replay.writes import BatchWriter
from .runtime import SourceRuntime

if TYPE_CHECKING:
    from .cycle import CycleResult


@dataclass
class ChunkFinisher:
    """Finishes the chunks of one cycle, one after another, on its own
    connection (the next chunk's media is copied meanwhile)."""
    runtime: SourceRuntime
    recorder: Recorder
    conn: asyncpg.Connection      # to the replay database, not the cycle's own
    writer: BatchWriter
    started_at: dt.datetime
    io_timeout: float
    committed: Committed          # what the cycle's chunks did so far
    result: CycleResult           # counted after every chunk: a later one may still fail
    marking: asyncio.Task | None = None   # the previous chunk's marks, on the recorder

    async def finish(self, moved: Transferred) -> Committed:
        """Makes the chunk's copies durable (one ``syncfs`` per target
        filesystem), commits its rows, removes the files nothing uses any
        more, counts the cycle so far, and starts marking its calls on the
        recorder: the marks of one chunk go on while the next one commits
        (they follow their own chunk's commit, one chunk at a time; a mark
        that fails is raised by the next finish or by :meth:`flush`).
        Failures that come from the mount going away are skipped (not the
        calls' fault). Returns the cycle's totals so far."""
        src = self.runtime.config
        loop = asyncio.get_running_loop()
        for root in sorted(moved.roots):  # not the media pool: it is busy copying the next chunk
            await loop.run_in_executor(None, copying.syncfs, root)
        failures, skipped = moved.failures, moved.skipped
        if failures and await self.runtime.media(self.io_timeout, sourcefiles.mount_problem,
                                                 src.mount_path, src.require_mount):
            # the mount went away under us: not the calls' fault
            skipped = skipped + [Failure(f.couple, "source_unavailable", f.detail) for f in failures]
            failures = []
            self.result.error = "mount path became unavailable during the cycle"
        faults.point("after_sync", src.sysname)
        self.runtime.set_phase("commit")
        try:
            part = await self.writer.commit(self.conn, moved.deliveries, failures, skipped,
                                            self.started_at, run_id=self.committed.run_id)
        except TicketLost as exc:
            # a copy renamed into place after a repair took its ticket is nobody's
            for path in await journal.unclaimed(self.conn, exc.lost):
                copying.remove(path)
            raise
        faults.point("after_commit", src.sysname)
        await remove_unused(self.conn, part.orphaned + moved.abandoned, part.replaced)
        self.committed.absorb(part)
        self.result.count(self.committed)
        await self.flush()
        self.marking = asyncio.create_task(self._mark(part.marks))
        return self.committed

    async def _mark(self, marks) -> None:
        self.runtime.set_phase("mark")
        await self.recorder.mark(marks)
        faults.point("after_mark", self.runtime.config.sysname)

    async def flush(self) -> None:
        """Waits for the marks in hand (their error, if any, is raised)."""
        marking, self.marking = self.marking, None
        if marking is not None:
            await marking


async def repair(conn: asyncpg.Connection, source: str, log) -> None:
    """Removes what an interrupted cycle of this source left behind: copies
    journaled but never committed, and files scheduled for removal."""
    async with conn.transaction():  # the tickets stay locked until the files are gone
        orphans = await journal.claim_orphans(conn, source)
        for path in orphans:
            copying.remove(path)
    kept = await journal.forget_referenced(conn, source)
    if orphans or kept:
        log.info("repair", removed_orphans=len(orphans), committed_leftovers=kept)
    await remove_unused(conn, [], None)


async def remove_unused(conn: asyncpg.Connection, orphaned: list[str],
                        replaced: list[str] | None) -> None:
    """Removes copies no committed row uses: this cycle's orphans, then the
    replaced files (all scheduled ones when ``replaced`` is None)."""
    if orphaned:
        # a copy can share its name with a file a committed row uses: prove it unused
        gone, _ = await journal.split_referenced(conn, orphaned)
        for path in gone:
            copying.remove(path)
        await journal.forget_pending(conn, orphaned)
    if replaced == []:
        return
    gone, still_used = await journal.unlinkable(conn, replaced)
    for path in gone:
        copying.remove(path)
    await journal.forget_unlink(conn, gone + still_used)
