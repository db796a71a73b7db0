"""What operators see of a source and its job (SPEC §8), as plain dicts.

No I/O: the daemon builds a source's *base* from its runtime and publishes
it (``synchrod.daemons``); the monitor API and ``synchrod status`` turn a
base into the same source and job views, with the time-derived fields
(lag) computed when asked.
"""
from __future__ import annotations

import datetime as dt

COUNT_KEYS = ("taken", "synchronized", "not_used", "erroneous", "failed", "skipped")
STATES = ("running", "waiting", "paused", "disabled", "down", "standby")


def iso(v) -> str | None:
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v


def parse_iso(v: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(v) if v else None


def source_base(src, rt, disabled_by: str | None, owned: bool) -> dict:
    """The published state of a source: JSON-ready, and unchanged while the
    source is (so publishing it only when it changed stays quiet)."""
    res, work = rt.last_result, rt.last_work
    return {
        "group": src.group, "enabled": src.enabled, "owned": owned, "state": rt.state,
        "paused_by": rt.paused_by,
        "disabled_by": "config" if not src.enabled else disabled_by,
        "stalled_since": iso(rt.stalled_since), "backlog": rt.backlog,
        "oldest_pending_at": iso(rt.oldest_pending_at), "last_cycle_at": iso(rt.last_cycle_at),
        "last_success_at": iso(rt.last_success_at), "last_error": rt.last_error,
        # of the last cycle that took calls: idle cycles in between do not hide them
        "last_counts": {k: getattr(work, k) for k in COUNT_KEYS} if work is not None else None,
        "last_state": res.state if res is not None else None,
        "last_taken": res.taken if res is not None else 0,
        "job": {"id": rt.job_id, "generation": rt.generation, "phase": rt.phase,
                "phase_at": iso(rt.phase_at), "failures_in_row": rt.failures_in_row},
    }


def state_of(base: dict) -> str:
    """One of STATES."""
    if base["disabled_by"]:
        return "disabled"
    if not base["owned"]:
        return "standby"
    if base["paused_by"]:
        return "paused"
    return base["state"] if base["state"] in ("running", "down") else "waiting"


def lag_seconds(base: dict, now: dt.datetime) -> float | None:
    if base["backlog"] == 0:
        return 0.0
    oldest = parse_iso(base["oldest_pending_at"])
    if oldest is None:
        return None
    return round(max((now - oldest).total_seconds(), 0.0), 1)


def source_view(sysname: str, base: dict, now: dt.datetime, owner: str | None,
                retrying: int = 0, erroneous: int = 0) -> dict:
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
