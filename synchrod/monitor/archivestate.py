"""What the monitor keeps of archive export (SPEC §10) for the metrics and
the live events: each task's last success and slot state (read with the
board's database refresh, updated by the runs' events), turned into the
``synchrod_archive_*`` gauges at scrape time."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ..core import clock
from ..replay import archiveruns


class ArchiveState:
    """The archive part of the monitor's live state; ``config`` returns the
    running configuration's ``archive`` section."""

    def __init__(self, config: Callable):
        self.config = config
        self.records: dict[str, dict] = {}
        self.last_success: dict[str, dt.datetime] = {}

    async def refresh(self, conn) -> None:
        """Reads every task's slot state and last completed run."""
        names = [t.name for t in self.config().tasks]
        self.records = await archiveruns.tasks(conn)
        self.last_success = await archiveruns.last_success(conn, names)

    def on_run_ended(self, run: dict) -> None:
        """A run ended here: a completed one is the task's last success."""
        if run["state"] == "completed" and run["finished_at"]:
            self.last_success[run["task"]] = dt.datetime.fromisoformat(run["finished_at"])

    def gauges(self) -> list[dict]:
        """Per task: the last success and the next run (epoch seconds, None when unknown)."""
        cfg, now, out = self.config(), clock.now(), []
        for task in cfg.tasks:
            nxt = cfg.next_run(task, self.records.get(task.name), now)
            last = self.last_success.get(task.name)
            out.append({"task": task.name, "last_success": last.timestamp() if last else None,
                        "next_run": nxt.timestamp() if nxt else None})
        return out
