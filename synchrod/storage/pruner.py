"""Automatic pruning in recording priority (SPEC §9): by age, media of calls
older than ``prune_after_days``; on a filesystem at critical or emergency,
its oldest unprotected calls, younger ones too, until its use is below
critical's ``exit``. Bounded rounds (``max_prune_calls``), each batch in the
crash-safe order of ``replay.deletions``. A filesystem that stays full with
nothing of synchrod's left to prune raises ``foreign_usage`` instead of
pruning beyond the rules."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from ..config import StorageConfig
from ..core import clock
from ..core.levels import Level, Mode
from ..replay.deletions import START
from .levels import FilesystemLevel
from .purge import purge


@dataclass
class PruneRound:
    """What one round pruned (its session events) and which filesystems stay
    full of what is not synchrod's to prune."""
    events: list[dict] = field(default_factory=list)
    lines: list[tuple[str, object]] = field(default_factory=list)   # (reason, PurgeLine)
    protected: int = 0                                     # protected calls passed over
    not_archived: int = 0                                  # not archived by require_archived
    age_position: tuple[dt.datetime, int] | None = None    # where the age pass ended
    foreign: list[FilesystemLevel] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)    # reason -> calls pruned
    bytes: dict[str, int] = field(default_factory=dict)    # reason -> bytes freed


def bytes_to_free(fs: FilesystemLevel, config: StorageConfig) -> int:
    """Bytes to remove from a filesystem at critical or above to bring its
    use below critical's exit; 0 below critical."""
    if fs.level < Level.CRITICAL:
        return 0
    target = fs.usage.capacity * config.thresholds.critical.exit // 100 - 1
    return max(0, fs.usage.used - target)


async def prune_round(conn: asyncpg.Connection, config: StorageConfig,
                      filesystems: Sequence[FilesystemLevel], *, daemon: str,
                      owned_roots: Sequence[str], dry_run: bool = False,
                      max_calls: int | None = None,
                      age_position: tuple[dt.datetime, int] | None = None) -> PruneRound:
    """One round of automatic pruning (nothing in retention priority): the
    full filesystems first, oldest calls on each until enough bytes go, then
    by age; at most ``max_prune_calls`` calls in all (``max_calls`` if
    given). ``dry_run``: the plan of the round, nothing changed.
    ``age_position``: where the previous round's age pass ended; everything
    before it is pruned or protected already, so the pass does not walk the
    pruned history again (the round reports where it ended in its own)."""
    out = PruneRound()
    if config.mode is not Mode.RECORDING_PRIORITY:
        return out
    budget = config.max_prune_calls if max_calls is None else max_calls
    far_future = clock.now() + dt.timedelta(days=1)
    for fs in filesystems:
        wanted = bytes_to_free(fs, config)
        if not wanted or budget <= 0:
            continue
        reason = "emergency" if fs.level is Level.EMERGENCY else "critical"
        report = await purge(conn, before=far_future, metadata=config.prune_metadata,
                             reason=reason, requested_by=daemon, owned_roots=owned_roots,
                             max_calls=budget, roots=fs.paths, bytes_wanted=wanted,
                             dry_run=dry_run, protected_recd=True,
                             require_archived=config.require_archived)
        budget -= len(report.removed)
        _record(out, reason, report)
        if report.freed < wanted:
            out.foreign.append(fs)   # what is left there is protected or not synchrod's
    if budget > 0:
        before = clock.now() - dt.timedelta(days=config.prune_after_days)
        report = await purge(conn, before=before, metadata=config.prune_metadata, reason="age",
                             requested_by=daemon, owned_roots=owned_roots, max_calls=budget,
                             dry_run=dry_run, after=age_position or START, protected_recd=True,
                             require_archived=config.require_archived)
        _record(out, "age", report)
        # a round cut short by its budget goes on from its last call, not its last page
        out.age_position = ((report.removed[-1].start_ts, report.removed[-1].couple_id)
                            if len(report.removed) >= budget and report.removed else report.position)
    return out


def _record(out: PruneRound, reason: str, report) -> None:
    out.protected += len(report.protected)
    out.not_archived += len(report.not_archived)
    out.lines += [(reason, line) for line in report.removed]
    if report.recd_bytes:
        out.bytes[reason] = out.bytes.get(reason, 0) + report.recd_bytes
    if not report.removed:
        return
    out.calls[reason] = out.calls.get(reason, 0) + len(report.removed)
    out.bytes[reason] = out.bytes.get(reason, 0) + report.bytes
    out.events.append({"eventType": "SESSION_EVENT", "eventAction": "PRUNED",
                       "sids": [line.sid for line in report.removed], "reason": reason,
                       "files": report.files, "bytes": report.bytes, "at": clock.iso(clock.now())})
