"""The ``archive`` section (SPEC §10): its schema, its cross-field rules
(unique task names, schedules, destinations apart from the target paths,
``storage.require_archived`` naming a task) and its immutable objects."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from ..core import archiveslots
from ..core.pathsafety import is_inside
from ..core.schedule import KINDS, WEEKDAYS, Schedule, once_problem, once_time, problems
from .validator import (
    INVALID,
    ConfigError,
    Field,
    ListOf,
    Section,
    abs_path,
    boolean,
    choice,
    integer,
    name,
)

_TASK_NAME_RE = re.compile(r"^[A-Za-z0-9_\- ]{1,64}$")


def task_name(value: Any, path: str) -> str:
    """A task name safe as one folder name: letters, digits, space, '_', '-'
    (so never '/' nor '..'), 1-64 characters, not only spaces."""
    if not isinstance(value, str) or not _TASK_NAME_RE.match(value) or not value.strip():
        raise ConfigError(path, "must be 1-64 letters, digits, spaces, '_' or '-' (one folder "
                                f"name: no '/', no '..'), not {value!r}")
    return value


def timezone(value: Any, path: str) -> str:
    """An IANA time zone name the system's tz database knows."""
    if not isinstance(value, str) or not value or value.startswith("/") or ".." in value:
        raise ConfigError(path, f"must be an IANA time zone name such as Europe/Prague, not {value!r}")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(path, f"is not a time zone this system knows: {value!r}") from None
    return value


def _at(value: Any, path: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(path, f"must be quoted: YAML reads an unquoted HH:MM as a number ({value})")
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"must be a string (\"now\", an ISO 8601 time, \":MM\" or \"HH:MM\"), "
                                f"not {value!r}")
    return value


SECTION = Field(Section({
    "enabled": Field(boolean, False),
    "timezone": Field(timezone, "UTC"),
    "tasks": Field(ListOf(Section({
        "name": Field(task_name),
        "enabled": Field(boolean, True),
        "destination": Field(abs_path),
        "schedule": Field(choice(*KINDS)),
        "at": Field(_at),
        "weekday": Field(choice(*WEEKDAYS), None, nullable=True),
        "day": Field(integer(1, 28), None, nullable=True),
        "lookback_days": Field(integer(1, 3650), 30),
        "sources": Field(ListOf(name, unique=True), list),
        "min_age_minutes": Field(integer(0, 7 * 24 * 60), 5),
    })), list),
}), dict)


def check(data: dict[str, Any], target_paths: list[tuple[str, str]],
          now: dt.datetime | None = None) -> list[ConfigError]:
    """The archive rules: task names unique, each schedule well formed for
    its kind (a ``once`` time less than 7 days ahead; one in the past is
    accepted: that task ran, or its slot is recorded as missed), destinations neither
    inside nor holding a target path, ``storage.require_archived`` naming a
    task. ``target_paths``: (key, path) of every target path."""
    arch, errors = data.get("archive"), []
    if not isinstance(arch, dict) or arch["tasks"] is INVALID:
        return errors
    tz = zoneinfo.ZoneInfo(arch["timezone"]) if arch["timezone"] is not INVALID else None
    now = now or dt.datetime.now(dt.timezone.utc)
    seen: dict[str, str] = {}
    for i, task in enumerate(arch["tasks"]):
        if not isinstance(task, dict):
            continue
        where = f"archive.tasks[{i}]"
        if task["name"] is not INVALID:
            if task["name"] in seen:
                errors.append(ConfigError(f"{where}.name", f"{task['name']!r} is already used by "
                                                           f"{seen[task['name']]}"))
            seen.setdefault(task["name"], f"{where}.name")
        if tz is not None and INVALID not in (task["schedule"], task["at"], task["weekday"], task["day"]):
            sched = Schedule(task["schedule"], task["at"], task["weekday"], task["day"])
            found = problems(sched, tz, now)
            errors += [ConfigError(f"{where}.{key}", message) for key, message in found]
            # a time in the past is fine: the task ran, or it is recorded as missed
            late = None if found else once_problem(sched, tz, now)
            if late and once_time(sched, tz) >= now:
                errors.append(ConfigError(f"{where}.at", late))
        dest = task["destination"]
        if dest is not INVALID:
            for key, path in target_paths:
                if is_inside(path, dest) or is_inside(dest, path):
                    errors.append(ConfigError(f"{where}.destination",
                                              f"must be apart from the target path {path} ({key})"))
    storage = data.get("storage")
    wanted = storage.get("require_archived") if isinstance(storage, dict) else None
    if wanted not in (None, INVALID) and wanted not in seen:
        errors.append(ConfigError("storage.require_archived",
                                  f"names no archive task: {wanted!r}"))
    return errors


@dataclass(frozen=True, slots=True)
class ArchiveTask:
    """One archive export task (SPEC §10)."""

    name: str
    enabled: bool
    destination: str
    schedule: Schedule
    lookback_days: int
    sources: tuple[str, ...]
    min_age_minutes: int

    @property
    def folder(self) -> str:
        """Where its files go: ``<destination>/<name>``."""
        return f"{self.destination.rstrip('/')}/{self.name}"


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    """The ``archive`` section."""

    enabled: bool
    timezone: str
    tasks: tuple[ArchiveTask, ...] = ()

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """``timezone`` as a tz object."""
        return zoneinfo.ZoneInfo(self.timezone)

    def task(self, task_name: str) -> ArchiveTask | None:
        """The task called ``task_name``; None if there is none."""
        return next((t for t in self.tasks if t.name == task_name), None)

    def next_run(self, task: ArchiveTask, state: dict | None,
                 now: dt.datetime) -> dt.datetime | None:
        """When ``task`` runs next (None while it or the archive is disabled, or once a
        once task ran); ``state``: what the replay database remembers of it
        (``replay.archiveruns.tasks``), None for a task not seen yet."""
        if not (self.enabled and task.enabled):
            return None
        state = state or {}
        return archiveslots.next_run(task.schedule, self.zone, now,
                                     once_done=state.get("once_done", False),
                                     seen_at=state.get("last_slot_at"))


def build(arch: dict[str, Any]) -> ArchiveConfig:
    """The :class:`ArchiveConfig` of the checked section."""
    return ArchiveConfig(arch["enabled"], arch["timezone"], tuple(
        ArchiveTask(t["name"], t["enabled"], t["destination"],
                    Schedule(t["schedule"], t["at"], t["weekday"], t["day"]),
                    t["lookback_days"], tuple(t["sources"]), t["min_age_minutes"])
        for t in arch["tasks"]))
