"""What operators see of a source and its job (SPEC §8), as plain dicts.

No I/O: the daemon builds a source's *base* from its runtime and publishes
it (``synchrod.daemons``); the monitor API and ``synchrod status`` turn a
base into the same source and job views, with the time-derived fields
(lag) computed when asked.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ..core.clock import iso, parse_iso
from ..core.states import COUNT_KEYS

if TYPE_CHECKING:
    from ..config import SourceConfig
    from ..sync.runtime import SourceRuntime

__all__ = ["COUNT_KEYS", "iso", "job_view", "lag_seconds", "parse_iso",
           "source_base", "source_view", "state_of"]


def source_base(src: SourceConfig, runtime: SourceRuntime, disabled_by: str | None,
                owned: bool) -> dict:
    """The published state of a source: JSON-ready, and unchanged while the
    source is (so publishing it only when it changed stays quiet)."""
    result, work = runtime.last_result, runtime.last_work
    return {
        "group": src.group, "enabled": src.enabled, "owned": owned, "state": runtime.state,
        "paused_by": runtime.paused_by,
        "disabled_by": "config" if not src.enabled else disabled_by,
        "stalled_since": iso(runtime.stalled_since), "backlog": runtime.backlog,
        "oldest_pending_at": iso(runtime.oldest_pending_at), "last_cycle_at": iso(runtime.last_cycle_at),
        "last_success_at": iso(runtime.last_success_at), "last_error": runtime.last_error,
        # of the last cycle that took calls: idle cycles in between do not hide them
        "last_counts": {k: getattr(work, k) for k in COUNT_KEYS} if work is not None else None,
        "last_state": result.state if result is not None else None,
        "last_taken": result.taken if result is not None else 0,
        "job": {"id": runtime.job_id, "generation": runtime.generation, "phase": runtime.phase,
                "phase_at": iso(runtime.phase_at), "failures_in_row": runtime.failures_in_row},
    }


def state_of(base: dict) -> str:
    """One of ``core.states.SourceState``'s values, as operators see the source."""
    if base["disabled_by"]:
        return "disabled"
    if not base["owned"]:
        return "standby"
    if base["paused_by"]:
        return "paused"
    return base["state"] if base["state"] in ("running", "down") else "waiting"


def lag_seconds(base: dict, now: dt.datetime) -> float | None:
    """How long the oldest pending call has waited (0 with no backlog; None: unknown)."""
    if base["backlog"] == 0:
        return 0.0
    oldest = parse_iso(base["oldest_pending_at"])
    if oldest is None:
        return None
    return round(max((now - oldest).total_seconds(), 0.0), 1)


def source_view(sysname: str, base: dict, now: dt.datetime, owner: str | None,
                retrying: int = 0, erroneous: int = 0) -> dict:
    """A source as the API's ``/sources`` and ``synchrod status`` show it."""
    return {
        "sysname": sysname, "group": base["group"], "enabled": base["enabled"],
        "state": state_of(base), "owner": owner, "paused": bool(base["paused_by"]),
        "disabled_by": base["disabled_by"], "stalled": base["stalled_since"] is not None,
        "stalled_since": base["stalled_since"], "backlog": base["backlog"],
        "lag_seconds": lag_seconds(base, now), "last_cycle_at": base["last_cycle_at"],
        "last_success_at": base["last_success_at"], "last_error": base["last_error"],
        "last_counts": base["last_counts"], "retrying": retrying, "erroneous": erroneous,
    }


def job_view(sysname: str, base: dict, owner: str | None) -> dict:
    """The source's job in the columns of a batch scheduler."""
    job, state = base["job"], state_of(base)
    counts = base["last_counts"]
    running = state == "running" or (base["state"] == "running" and state == "paused")
    if state == "disabled":
        status = "Disabled"
        comment = ("disabled in the configuration file" if base["disabled_by"] == "config"
                   else f"disabled by {base['disabled_by']}")
    elif running:
        status, comment = "Running", f"cycle {job['generation']}: {job['phase'] or 'starting'}"
        if state == "paused":
            comment += f" (paused by {base['paused_by']}: finishing the calls in hand)"
    elif state == "paused":
        status, comment = "Pause", f"paused by {base['paused_by']}"
    elif state == "standby":
        status, comment = "Waiting", f"worked by {owner}" if owner else "waiting for its lock"
    elif job["generation"] == 0:
        status, comment = "Waiting", "no cycle yet"
    elif base["last_state"] in ("down", "error"):
        status, comment = "Error", base["last_error"] or base["last_state"]
    else:
        status = "Done"
        comment = "idle: nothing to synchronize" if not base["last_taken"] or not counts else (
            f"{counts['taken']} taken: {counts['synchronized']} S, {counts['not_used']} N, "
            f"{counts['erroneous']} E, {counts['failed']} failed, {counts['skipped']} skipped")
        if base["last_error"]:
            comment += f"; {base['last_error']}"
    return {
        "id": job["id"], "source": sysname, "generation": job["generation"], "state": state,
        "attempt": job["failures_in_row"] + 1, "type": job["phase"], "status": status,
        "timestamp": job["phase_at"] if running else (base["last_cycle_at"] or job["phase_at"]),
        "comment": comment,
    }
