"""The status report: every source and daemon, as the replay database knows
them (the daemons publish their state there, so any node can ask);
``synchrod status`` prints it (``cli.render``)."""
from __future__ import annotations

from types import SimpleNamespace

import asyncpg

from ..config import Config
from ..core import clock
from ..core.states import COUNT_KEYS
from ..replay import daemons, history, reads
from . import views


async def gather(cfg: Config | None, conn: asyncpg.Connection) -> dict:
    """The report; with ``cfg`` None (the file on disk is invalid) the
    sources are those the live daemons publish. Sources and jobs are the
    monitor API's views (``control.views``) of what the owners publish."""
    live = await daemons.live(conn)
    sources_cfg = cfg.sources if cfg is not None else _published_sources(live)
    names = [s.sysname for s in sources_cfg]
    ready = await reads.schema_ready(conn)
    last = await history.last_runs(conn, names) if ready else {}
    attempts = await reads.attempt_counts(conn, names) if ready else {}
    owner_of = daemons.owners(live)
    now = clock.now()
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
        "daemons": [{k: clock.iso(v) for k, v in d.items()
                     if k not in ("sources", "targets", "storage")}
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
            "last_cycle_at": clock.iso(run["finished_at"]) if run else None, "last_success_at": None,
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
