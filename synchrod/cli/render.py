"""How the command line shows things: aligned tables, byte counts, lags, the
status report and the summary of ``synchrod once``."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..storage.purge import PurgeReport
    from ..sync.rounds import Totals


def table(rows: list[tuple]) -> list[str]:
    """Rows of text cells as aligned lines (the first row is the heading)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def lag(seconds: float | None) -> str:
    """A lag in seconds, short (``45s``, ``3m07s``, ``2h05m``); ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status(report: dict) -> str:
    """The status report (``control.status.gather``) as ``synchrod status`` prints it."""
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
                     lag(s["lag_seconds"]), s["last_cycle_at"] or "never",
                     str(c.get("synchronized", 0)), str(c.get("not_used", 0)),
                     str(c.get("erroneous", 0)), str(c.get("failed", 0)), str(s["retrying"]),
                     str(s["erroneous"])))
    lines += table(rows)
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
        lines += table(jobs)
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    """A byte count as people read it (``1.5 MiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary(totals: Iterable[Totals], dry_run: bool) -> str:
    """What ``synchrod once`` did, per source: a table, then errors and a dry run's plan."""
    rows = [("source", "state", "cycles", "taken", "S", "N", "E", "failed", "skipped",
             "files", "bytes", "seconds")]
    totals = list(totals)
    for t in totals:
        rows.append((t.source, t.state, str(t.cycles), str(t.taken), str(t.synchronized),
                     str(t.not_used), str(t.erroneous), str(t.failed), str(t.skipped),
                     str(t.files), human_bytes(t.bytes), f"{t.seconds:.2f}"))
    lines = ["dry run: nothing was copied, written or marked"] if dry_run else []
    lines += table(rows)
    for t in totals:
        if t.error:
            lines.append(f"{t.source}: {t.error}")
        lines += [f"{t.source}: would {action} {sid}" for sid, action in t.plan]
    return "\n".join(lines)


def purge(report: PurgeReport, dry_run: bool, metadata: bool) -> str:
    """``synchrod purge``'s output: a line per call, the skipped ones, a summary."""
    what = "would remove" if dry_run else "removed"
    kind = "call" if metadata else "media of"
    lines = [f"{what} {kind} {line.sid} (cli): {line.files} file(s), {human_bytes(line.bytes)}, "
             f"started {line.start_ts.isoformat()}" for line in report.removed]
    lines += [f"skipped {sid}: protected" for sid in report.protected]
    lines += [f"not found {sid}: no target call has this sid" for sid in report.missing]
    lines.append(f"{'dry run: ' if dry_run else ''}{len(report.removed)} call(s) "
                 f"{'would be ' if dry_run else ''}removed ({report.files} file(s), "
                 f"{human_bytes(report.bytes)}); {len(report.protected)} protected call(s) skipped")
    return "\n".join(lines)


def storage(report: dict) -> str:
    """``synchrod storage``'s output: each filesystem, the next round, what it holds back."""
    if not report["enabled"]:
        return "space management is disabled (storage.enabled: false)"
    lines = [f"space management: {report['mode']}"]
    for fs in report["filesystems"]:
        lines.append(f"filesystem {fs['filesystem']} ({', '.join(fs['paths'])}): "
                     f"{fs['use_ratio'] * 100:.1f}% used, level {fs['level']}"
                     + ("" if fs["accepting"] else ", takes no new files"))
    if not report["filesystems"]:
        lines.append("no target path could be measured")
    plan = report["plan"]
    lines.append(f"next pruning round: {len(plan['next'])} call(s)"
                 + (" (first ones listed)" if plan["next"] else ""))
    lines += [f"  {c['sid']} ({c['reason']}): {human_bytes(c['bytes'])}, started {c['start_ts']}"
              for c in plan["next"]]
    held = plan["held_back"]
    lines.append(f"held back: {held['protected']} protected, {held['not_archived']} not archived, "
                 f"{held['in_flight']} copies in flight")
    return "\n".join(lines)
