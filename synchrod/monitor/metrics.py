"""Prometheus metrics (SPEC §8), in a registry of their own.

Counters and the cycle histogram are fed by each cycle's result, the
archive counters by the archive scheduler's events; gauges (backlog, lag,
up, owned, target path use) are read from the live state when Prometheus
scrapes, so a removed source or path disappears at once. The alerting rules
in etc/prometheus/synchrod-alerts.yml use these names.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from .. import __version__
from ..core.levels import Level
from ..core.states import OUTCOMES
from ..replay.deletionjobs import STATES

CYCLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: how an archive slot ends (``replay.archiveruns``): a run completed, had file
#: errors or failed; a slot no daemon ran (missed) or that came while the
#: previous run still went on (skipped)
ARCHIVE_RUN_STATES = ("completed", "errors", "failed", "missed", "skipped")


class Metrics:
    """``gauges`` returns (sources, target_paths) as the monitor's views
    show them (see ``monitor.board``)."""

    def __init__(self, gauges: Callable[[], tuple[list[dict], list[dict]]],
                 archive_gauges: Callable[[], list[dict]] = list):
        disable_created_metrics()  # the *_created series only double the output
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("synchrod_calls", "Calls handled, by source and result",
                             ["source", "result"], registry=r)
        self.files = Counter("synchrod_files_copied", "Media files copied or linked to the target",
                             ["source"], registry=r)
        self.bytes = Counter("synchrod_bytes_copied", "Bytes of media copied to the target",
                             ["source"], registry=r)
        self.cycles = Counter("synchrod_cycles", "Cycles run, by source and end state "
                              "(ok, idle, down, error)", ["source", "state"], registry=r)
        self.duration = Histogram("synchrod_cycle_duration_seconds", "Duration of a cycle",
                                  ["source"], buckets=CYCLE_BUCKETS, registry=r)
        self.reloads = Counter("synchrod_config_reloads", "Configuration reloads by result",
                               ["result"], registry=r)
        self.pruned_calls = Counter("synchrod_pruned_calls", "Calls pruned or deleted on the "
                                    "target, by reason", ["reason"], registry=r)
        self.pruned_bytes = Counter("synchrod_pruned_bytes", "Bytes of media pruned or deleted "
                                    "on the target, by reason", ["reason"], registry=r)
        self.deletion_jobs = Counter("synchrod_deletion_jobs", "Bulk delete jobs that entered "
                                     "each state (queued, running, done, cancelled, failed)",
                                     ["state"], registry=r)
        for state in STATES:
            self.deletion_jobs.labels(state)
        self.archive_files = Counter("synchrod_archive_files", "Files an archive task archived "
                                     "or failed to", ["task", "result"], registry=r)
        self.archive_bytes = Counter("synchrod_archive_bytes", "Bytes of media archived",
                                     ["task"], registry=r)
        for reason in ("age", "critical", "emergency", "api", "cli"):
            self.pruned_calls.labels(reason)
            self.pruned_bytes.labels(reason)
        self.archive_runs = Counter("synchrod_archive_runs", "Archive slots by how they ended "
                                    "(completed, errors, failed, missed, skipped)",
                                    ["task", "state"], registry=r)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self.reload_ok = Gauge("synchrod_config_last_reload_successful", "1 when the last "
                               "configuration reload was applied (or none was tried since the "
                               "start), 0 while the daemon runs an older file than the one "
                               "on disk", registry=r)
        self.reload_ok.set(1)   # the daemon does not start on a file it refuses
        r.register(_LiveCollector(gauges))
        r.register(_ArchiveCollector(archive_gauges))

    def add_source(self, source: str) -> None:
        """Every series of a source exists from the start, at zero."""
        for result in OUTCOMES:
            self.calls.labels(source, result)
        self.files.labels(source)
        self.bytes.labels(source)
        self.duration.labels(source)

    def forget_source(self, source: str) -> None:
        """Removes every series of the source (it left the configuration)."""
        for metric in (self.calls, self.files, self.bytes, self.cycles, self.duration):
            for labels in list(metric._metrics):  # noqa: SLF001 - no public listing of children
                if labels[0] == source:
                    metric.remove(*labels)

    def observe_cycle(self, source: str, result) -> None:
        """Adds a cycle's result to the source's series: calls by outcome, files, bytes, the
        cycle by end state, and its duration."""
        for name in OUTCOMES:
            n = getattr(result, name)
            if n:
                self.calls.labels(source, name).inc(n)
        if result.files:
            self.files.labels(source).inc(result.files)
        if result.bytes:
            self.bytes.labels(source).inc(result.bytes)
        self.cycles.labels(source, result.state).inc()
        self.duration.labels(source).observe(result.seconds)

    def observe_pruning(self, event: dict) -> None:
        """Counts the calls and bytes of a SESSION_EVENT (pruned or deleted)."""
        self.pruned_calls.labels(event["reason"]).inc(len(event["sids"]))
        self.pruned_bytes.labels(event["reason"]).inc(event.get("bytes", 0))

    def add_archive_task(self, task: str) -> None:
        """Starts a task's counters at 0."""
        for result in ("archived", "failed"):
            self.archive_files.labels(task, result)
        self.archive_bytes.labels(task)
        for state in ARCHIVE_RUN_STATES:
            self.archive_runs.labels(task, state)

    def observe_archive(self, what: str, data: dict) -> None:
        """An event of the archive scheduler (``daemon.archivewatch``): a page
        of a run (``batch``), a run that ended (``ended``, its view), a slot
        recorded without a run (``slot``: missed or skipped)."""
        if what == "batch":
            self.observe_archive_batch(data["task"], data["ok"], data["failed"], data["bytes"])
        elif what in ("ended", "slot") and data["state"] in ARCHIVE_RUN_STATES:
            self.archive_runs.labels(data["task"], data["state"]).inc()

    def observe_archive_batch(self, task: str, ok: int, failed: int, nbytes: int) -> None:
        """Counts one page of an archive run."""
        self.archive_files.labels(task, "archived").inc(ok)
        self.archive_files.labels(task, "failed").inc(failed)
        self.archive_bytes.labels(task).inc(nbytes)

    def reloaded(self, ok: bool) -> None:
        """Counts a configuration reload as a success or a failure; a failure
        holds the last-reload gauge at 0 until a reload succeeds."""
        self.reloads.labels("success" if ok else "failure").inc()
        self.reload_ok.set(1 if ok else 0)

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format, the gauges read from the live state now."""
        return generate_latest(self.registry)


class _LiveCollector:
    def __init__(self, gauges: Callable[[], tuple[list[dict], list[dict], list[dict]]]):
        self.gauges = gauges

    def describe(self) -> Iterable:
        return []  # not known before the first collect: keeps registration free of I/O

    def collect(self) -> Iterable:
        """The gauges, from the live views at scrape time: per source backlog, lag, up (not
        for a standby source), owned, last success, enabled, paused, stalled; per target path
        use, watermark, full, available; the build. Unknown values and gone sources have no
        series."""
        sources, paths, filesystems = self.gauges()
        backlog = GaugeMetricFamily("synchrod_backlog_calls",
                                    "Eligible calls not yet synchronized", labels=["source"])
        lag = GaugeMetricFamily("synchrod_sync_lag_seconds", "Age of the oldest eligible call "
                                "not yet synchronized (0 when none)", labels=["source"])
        up = GaugeMetricFamily("synchrod_source_up", "1 when the last cycle of the source "
                               "reached its database and mount", labels=["source"])
        last_ok = GaugeMetricFamily("synchrod_last_success_timestamp_seconds",
                                    "End of the last cycle that did not fail", labels=["source"])
        enabled = GaugeMetricFamily("synchrod_source_enabled", "1 when the source is enabled "
                                    "(in the file and through the API)", labels=["source"])
        paused = GaugeMetricFamily("synchrod_source_paused", "1 while paused through the API",
                                   labels=["source"])
        stalled = GaugeMetricFamily("synchrod_source_stalled", "1 while the media I/O of the "
                                    "source makes no progress (hung mount)", labels=["source"])
        owned = GaugeMetricFamily("synchrod_source_owned", "1 when this daemon owns the source "
                                  "and runs its cycles, 0 when another daemon does (standby) or "
                                  "it is disabled", labels=["source"])
        for s in sources:
            name = [s["sysname"]]
            if s["backlog"] is not None:
                backlog.add_metric(name, s["backlog"])
            if s["lag_seconds"] is not None:
                lag.add_metric(name, s["lag_seconds"])
            if s["state"] != "standby":  # another daemon reports it
                up.add_metric(name, 0 if s["state"] == "down" else 1)
            if s["last_success_at"] is not None:
                last_ok.add_metric(name, dt.datetime.fromisoformat(s["last_success_at"]).timestamp())
            enabled.add_metric(name, 0 if s["disabled_by"] else 1)
            paused.add_metric(name, 1 if s["paused"] else 0)
            stalled.add_metric(name, 1 if s["stalled"] else 0)
            # a disabled source is released by its owner at its group's next round
            owned.add_metric(name, 0 if s["state"] in ("standby", "disabled") else 1)
        usage = GaugeMetricFamily("synchrod_target_path_usage_ratio",
                                  "Used fraction of the target path's filesystem", labels=["path"])
        watermark = GaugeMetricFamily("synchrod_target_path_watermark_ratio",
                                      "Use at which the path takes no new files", labels=["path"])
        full = GaugeMetricFamily("synchrod_target_path_above_watermark",
                                 "1 when the path takes no new files", labels=["path"])
        available = GaugeMetricFamily("synchrod_target_path_available",
                                      "0 when the path is missing or cannot be written", labels=["path"])
        for p in paths:
            if p["usage_ratio"] is not None:
                usage.add_metric([p["path"]], p["usage_ratio"])
            watermark.add_metric([p["path"]], p["watermark"] / 100)
            full.add_metric([p["path"]], 1 if p["above_watermark"] else 0)
            available.add_metric([p["path"]], 0 if p["problem"] else 1)
        level = GaugeMetricFamily("synchrod_storage_level", "Storage level of the filesystem "
                                  "(0 normal, 1 warning, 2 critical, 3 emergency)",
                                  labels=["filesystem"])
        accepting = GaugeMetricFamily("synchrod_storage_accepting", "1 when the path takes new "
                                      "files at its filesystem's storage level", labels=["path"])
        for fs in filesystems:
            level.add_metric([fs["filesystem"]], Level[fs["level"].upper()].value)
            for path in fs["paths"]:
                accepting.add_metric([path], 1 if fs["accepting"] else 0)
        info = InfoMetricFamily("synchrod_build", "Version of synchrod",
                                value={"version": __version__})
        yield from (backlog, lag, up, owned, last_ok, enabled, paused, stalled, usage, watermark,
                    full, available, level, accepting, info)


class _ArchiveCollector:
    def __init__(self, gauges: Callable[[], list[dict]]):
        self.gauges = gauges

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        """Per archive task: when its last completed run ended, when it runs next."""
        last = GaugeMetricFamily("synchrod_archive_last_success_timestamp_seconds",
                                 "End of the task's last completed archive run", labels=["task"])
        nxt = GaugeMetricFamily("synchrod_archive_next_run_timestamp_seconds",
                                "When the archive task runs next", labels=["task"])
        for g in self.gauges():
            if g["last_success"] is not None:
                last.add_metric([g["task"]], g["last_success"])
            if g["next_run"] is not None:
                nxt.add_metric([g["task"]], g["next_run"])
        yield from (last, nxt)
