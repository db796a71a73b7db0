"""`synchrod status`: every source and daemon, as the replay database knows
them (the daemons publish their state there, so any node can ask)."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import asyncpg

from .config import Config
from .replay import daemons

_LAST_RUNS = """
SELECT r.source, r.finished_at, r.taken, r.synchronized, r.not_used, r.erroneous, r.failed,
       r.skipped, r.error
  FROM (SELECT DISTINCT ON (source) * FROM synchrod.runs WHERE source = ANY($1::text[])
         ORDER BY source, id DESC) r
"""
# retrying: failed, waiting for their next try; erroneous: gave up (E or, without
# mark_erroneous, retried hourly)
_ATTEMPTS = """
SELECT source, count(*) FILTER (WHERE next_try_at < 'infinity') AS retrying,
       count(*) FILTER (WHERE next_try_at = 'infinity') AS erroneous
  FROM synchrod.attempts WHERE source = ANY($1::text[]) GROUP BY source
"""
COUNT_KEYS = ("taken", "synchronized", "not_used", "erroneous", "failed", "skipped")


def _iso(v) -> str | None:
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v


async def gather(cfg: Config | None, conn: asyncpg.Connection) -> dict:
    """The report; with ``cfg`` None (the file on disk is invalid) the
    sources are those the live daemons publish."""
    live = await daemons.live(conn)
    sources_cfg = cfg.sources if cfg is not None else _published_sources(live)
    names = [s.sysname for s in sources_cfg]
    ready = await conn.fetchval("SELECT to_regclass('synchrod.runs') IS NOT NULL")
    last = {r["source"]: r for r in await conn.fetch(_LAST_RUNS, names)} if ready else {}
    attempts = {r["source"]: r for r in await conn.fetch(_ATTEMPTS, names)} if ready else {}
    owner_of: dict[str, dict] = {}
    for d in live:
        for name, st in d["sources"].items():
            if st.get("owned"):
                owner_of[name] = d
    sources = []
    for s in sources_cfg:
        run, att, owner = last.get(s.sysname), attempts.get(s.sysname), owner_of.get(s.sysname)
        published = owner["sources"][s.sysname] if owner else {}
        if not s.enabled:
            state = "disabled"
        elif owner is not None:
            state = published.get("state", "waiting")
        elif live:
            state = "standby" if any(s.sysname in d["sources"] for d in live) else "unowned"
        else:
            state = "unowned"
        sources.append({
            "sysname": s.sysname, "enabled": s.enabled, "group": s.group, "state": state,
            "owner": owner["name"] if owner else None,
            "stalled": bool(published.get("stalled_since")),
            "stalled_since": published.get("stalled_since"),
            "last_error": published.get("last_error") if owner else (run["error"] if run else None),
            "last_cycle_at": published.get("last_cycle_at") or (_iso(run["finished_at"]) if run else None),
            "last_counts": {k: run[k] for k in COUNT_KEYS} if run else None,
            "retrying": att["retrying"] if att else 0,
            "erroneous": att["erroneous"] if att else 0,
        })
    return {
        "daemons": [{k: _iso(v) for k, v in d.items() if k != "sources"} for d in live],
        "sources": sources,
    }


def _published_sources(live: list[dict]) -> list[SimpleNamespace]:
    seen: dict[str, SimpleNamespace] = {}
    for d in live:
        for name, st in d["sources"].items():
            seen.setdefault(name, SimpleNamespace(sysname=name, group=st.get("group"),
                                                  enabled=st.get("state") != "disabled"))
    return [seen[n] for n in sorted(seen)]


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
    head = ("source", "state", "owner", "last cycle", "S", "N", "E", "failed", "retrying",
            "erroneous")
    rows = [head]
    for s in report["sources"]:
        c = s["last_counts"] or {}
        rows.append((s["sysname"], s["state"] + (" (stalled)" if s["stalled"] else ""),
                     s["owner"] or "-", s["last_cycle_at"] or "never",
                     str(c.get("synchronized", 0)), str(c.get("not_used", 0)),
                     str(c.get("erroneous", 0)), str(c.get("failed", 0)), str(s["retrying"]),
                     str(s["erroneous"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for s in report["sources"]:
        if s["last_error"]:
            lines.append(f"{s['sysname']}: {s['last_error']}")
    return "\n".join(lines)
