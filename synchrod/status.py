"""`synchrod status`: every source and daemon, as the replay database knows
them (the daemons publish their state there, so any node can ask)."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import asyncpg

from . import views
from .config import Config
from .views import COUNT_KEYS
from .replay import daemons, reads

# the newest run of each source: one index probe per source, whatever the history
_LAST_RUNS = """
SELECT r.* FROM unnest($1::text[]) AS s(name)
 CROSS JOIN LATERAL (SELECT source, finished_at, state, taken, synchronized, not_used,
                            erroneous, failed, skipped, error
                       FROM synchrod.runs WHERE source = s.name ORDER BY id DESC LIMIT 1) r
"""


def _iso(v) -> str | None:
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v


async def gather(cfg: Config | None, conn: asyncpg.Connection) -> dict:
    """The report; with ``cfg`` None (the file on disk is invalid) the
    sources are those the live daemons publish. Sources and jobs are the
    monitor API's views (``synchrod.views``) of what the owners publish."""
    live = await daemons.live(conn)
    sources_cfg = cfg.sources if cfg is not None else _published_sources(live)
    names = [s.sysname for s in sources_cfg]
    ready = await conn.fetchval("SELECT to_regclass('synchrod.runs') IS NOT NULL")
    last = {r["source"]: r for r in await conn.fetch(_LAST_RUNS, names)} if ready else {}
    attempts = await reads.attempt_counts(conn, names) if ready else {}
    owner_of = daemons.owners(live)
    now = dt.datetime.now(dt.timezone.utc)
    sources, jobs = [], []
    for s in sources_cfg:
        run, owner = last.get(s.sysname), owner_of.get(s.sysname)
        base = owner["sources"][s.sysname] if owner else _unowned_base(s, run)
        view = views.source_view(s.sysname, base, now, owner["name"] if owner else None,
                                 *attempts.get(s.sysname, (0, 0)))
        if view["state"] == "standby" and not any(s.sysname in d["sources"] for d in live):
            view["state"] = "unowned"  # no running daemon has it in its configuration
        sources.append(view)
        jobs.append(views.job_view(s.sysname, base, owner["name"] if owner else None))
    return {
        "daemons": [{k: _iso(v) for k, v in d.items() if k not in ("sources", "targets")}
                    for d in live],
        # target path -> (why it takes no new files, the daemon that found it)
        "target_problems": {path: {"problem": problem, "daemon": d["name"]}
                            for d in live for path, problem in d["targets"].items()},
        "sources": sources,
        "jobs": jobs,
    }


def _unowned_base(s, run) -> dict:
    """A source no live daemon works: what the history says of it."""
    counts = {k: run[k] for k in COUNT_KEYS} if run else None
    return {"group": s.group, "enabled": s.enabled, "owned": False, "state": "waiting",
            "paused_by": None, "disabled_by": None if s.enabled else "config",
            "stalled_since": None, "backlog": None, "oldest_pending_at": None,
            "last_cycle_at": _iso(run["finished_at"]) if run else None, "last_success_at": None,
            "last_error": run["error"] if run else None, "last_counts": counts,
            "last_state": run["state"] if run else None, "last_taken": run["taken"] if run else 0,
            "job": {"id": 0, "generation": 0, "phase": None, "phase_at": None,
                    "failures_in_row": 0}}


def _published_sources(live: list[dict]) -> list[SimpleNamespace]:
    seen: dict[str, SimpleNamespace] = {}
    for d in live:
        for name, st in d["sources"].items():
            seen.setdefault(name, SimpleNamespace(sysname=name, group=st.get("group"),
                                                  enabled=st.get("state") != "disabled"))
    return [seen[n] for n in sorted(seen)]


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render(report: dict) -> str:
    lines = []
    if report.get("config_file_error"):
        lines.append(f"configuration file has errors: {report['config_file_error']}")
    if not report["daemons"]:
        lines.append("no synchrod daemon is running on this replay database")
    for d in report["daemons"]:
        lines.append(f"daemon {d['name']} ({d['state']}, version {d['version']}, "
                     f"since {d['started_at']}) config {d['config_path']}")
        if d.get("config_error"):
            lines.append(f"  CONFIG ERROR (running configuration kept): {d['config_error']}")
    rows = [("source", "state", "owner", "backlog", "lag", "last cycle", "S", "N", "E", "failed",
             "retrying", "erroneous")]
    for s in report["sources"]:
        c = s["last_counts"] or {}
        rows.append((s["sysname"], s["state"] + (" (stalled)" if s["stalled"] else ""),
                     s["owner"] or "-", "-" if s["backlog"] is None else str(s["backlog"]),
                     _lag(s["lag_seconds"]), s["last_cycle_at"] or "never",
                     str(c.get("synchronized", 0)), str(c.get("not_used", 0)),
                     str(c.get("erroneous", 0)), str(c.get("failed", 0)), str(s["retrying"]),
                     str(s["erroneous"])))
    lines += _table(rows)
    for s in report["sources"]:
        if s["last_error"]:
            lines.append(f"{s['sysname']}: {s['last_error']}")
    for path, p in sorted(report.get("target_problems", {}).items()):
        lines.append(f"target path {path} takes no new files: {p['problem']} (seen by {p['daemon']})")
    if report.get("jobs"):
        lines.append("")
        jobs = [("ID", "Source", "Generation", "State", "Attempt", "Type", "Status", "Timestamp",
                 "Comment")]
        for j in report["jobs"]:
            jobs.append((str(j["id"]), j["source"], str(j["generation"]), j["state"],
                         str(j["attempt"]), j["type"] or "-", j["status"],
                         (j["timestamp"] or "-")[:19], j["comment"]))
        lines += _table(jobs)
    return "\n".join(lines)
