"""The storage report (``GET /api/v1/storage``, ``synchrod storage``): every
target filesystem's level and use, and the plan of the next pruning round
with what it holds back and why."""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ..config import StorageConfig
from ..core import clock
from ..replay import journal
from .levels import FilesystemLevel
from .pruner import prune_round

PLAN_LIMIT = 20   # calls of the next round listed


async def plan(conn: asyncpg.Connection, config: StorageConfig,
               filesystems: Sequence[FilesystemLevel], *, daemon: str,
               owned_roots: Sequence[str], limit: int = PLAN_LIMIT) -> dict:
    """What the next automatic pruning round would remove first (``limit``
    calls at most; none in retention priority) and what it holds back:
    protected couples it passed over, those ``require_archived``'s task has
    not archived, and copies in flight (journaled, not yet committed). Changes nothing."""
    if not config.enabled:
        return {"next": [], "held_back": {"protected": 0, "not_archived": 0, "in_flight": 0}}
    dry = await prune_round(conn, config, filesystems, daemon=daemon, owned_roots=owned_roots,
                            dry_run=True, max_calls=limit)
    return {"next": [{"sid": line.sid, "couple_id": line.couple_id,
                      "start_ts": clock.iso(line.start_ts), "reason": reason, "bytes": line.bytes}
                     for reason, line in dry.lines],
            "held_back": {"protected": dry.protected, "not_archived": dry.not_archived,
                          "in_flight": await journal.in_flight(conn)}}


def report(config: StorageConfig, filesystems: list[dict], plan_: dict) -> dict:
    """The report's object: the mode, the levels' percentages (enter, exit),
    the filesystems' views, the plan."""
    t = config.thresholds
    levels = {name: {"enter": band.enter, "exit": band.exit}
              for name, band in (("warning", t.warning), ("critical", t.critical),
                                 ("emergency", t.emergency))}
    return {"enabled": config.enabled, "mode": config.mode.value, "levels": levels,
            "filesystems": filesystems, "plan": plan_}
