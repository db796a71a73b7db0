"""The storage level of every target filesystem, as this daemon measured it.

Paths on one filesystem (one ``st_dev``) are one measurement and share one
level. Placement asks :meth:`StorageLevels.accepting` before choosing a path;
the copies in flight ask :meth:`StorageLevels.abandons` (from the media
pool's threads: the sets they read are replaced whole, never changed in
place). :meth:`StorageLevels.update` returns the threshold events of the
levels it changed, named as Cisco MediaSense names them.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import StorageConfig
from ..core import clock
from ..core.levels import Level, abandons_copies, accepting, crossings, next_level
from ..core.pathsafety import is_inside
from ..core.placement import FsUsage
from ..fs.targets import TargetState


@dataclass
class FilesystemLevel:
    """One target filesystem: its paths, its last measured use and its level."""
    fs_id: int
    filesystem: str               # its mount point
    paths: tuple[str, ...]        # the target paths on it, in the file's order
    usage: FsUsage
    level: Level = Level.NORMAL
    since: dt.datetime | None = None   # when it entered its level

    def view(self, config: StorageConfig) -> dict:
        """The filesystem as the API shows it."""
        return {"filesystem": self.filesystem, "paths": list(self.paths),
                "use_ratio": round(self.usage.ratio(), 4), "used_bytes": self.usage.used,
                "capacity_bytes": self.usage.capacity, "level": self.level.label,
                "since": clock.iso(self.since), "accepting": accepting(config.mode, self.level)}


class StorageLevels:
    """Levels per filesystem, kept across measurements (the hysteresis needs
    the previous level); empty while space management is disabled."""

    def __init__(self, config: StorageConfig):
        self.config = config
        self.filesystems: dict[int, FilesystemLevel] = {}
        self._closed: frozenset[str] = frozenset()      # target paths taking no new files
        self._abandon: frozenset[str] = frozenset()     # target paths whose copies are abandoned

    def apply_config(self, config: StorageConfig) -> None:
        """Adopts a reloaded ``storage`` section; levels are kept (the next
        measurement applies the new thresholds)."""
        self.config = config
        if not config.enabled:
            self.filesystems = {}
            self._closed = self._abandon = frozenset()

    def update(self, states: Mapping[str, TargetState], paths_in_order: tuple[str, ...],
               daemon: str) -> list[dict]:
        """Adopts a measurement of the target paths (``paths_in_order``: every
        target path, in the file's order); returns one threshold event per level
        each filesystem passed, in order. Paths that could not be measured keep
        no level (they take no new files anyway)."""
        if not self.config.enabled:
            return []
        grouped: dict[int, list[str]] = {}
        for path in paths_in_order:
            st = states.get(path)
            if st is not None and st.usage is not None and st.problem is None:
                grouped.setdefault(st.usage.fs_id, []).append(path)
        events, now, known = [], clock.now(), {}
        for fs_id, paths in grouped.items():
            st = states[paths[0]]
            old = self.filesystems.get(fs_id)
            before = old.level if old is not None else Level.NORMAL
            level = next_level(before, st.usage.used, st.usage.capacity, self.config.thresholds)
            fs = FilesystemLevel(fs_id, st.filesystem or paths[0], tuple(paths), st.usage, level,
                                 old.since if old is not None and level == before else now)
            known[fs_id] = fs
            for action, step in crossings(before, level):
                events.append(threshold_event(fs, action, step, daemon, now))
        self.filesystems = known
        self._closed = frozenset(p for fs in known.values() if not accepting(self.config.mode, fs.level)
                                 for p in fs.paths)
        self._abandon = frozenset(p for fs in known.values() if abandons_copies(fs.level)
                                  for p in fs.paths)
        return events

    def accepting(self, path: str) -> bool:
        """Whether a target path may take new files at its filesystem's level."""
        return path not in self._closed

    def abandons(self, dest: str) -> bool:
        """Whether a copy to ``dest`` must be abandoned: its target path's
        filesystem is at emergency. Safe to call from the media pool."""
        return any(is_inside(root, dest) for root in self._abandon)

    def adopt_published(self, published: list[dict]) -> None:
        """Takes the levels a running daemon published for the same
        filesystems (its hysteresis knows what a fresh measurement cannot)."""
        by_name = {fs["filesystem"]: fs["level"] for fs in published}
        for fs in self.filesystems.values():
            if fs.filesystem in by_name:
                fs.level = Level[by_name[fs.filesystem].upper()]

    def published(self) -> list[dict]:
        """What the daemon publishes for ``synchrod status`` and ``storage``:
        each filesystem's level, paths and use to the percent (so the row is
        not rewritten for every file copied)."""
        return [{**v, "use_ratio": round(v["use_ratio"], 2), "used_bytes": None,
                 "capacity_bytes": None} for v in self.views()]

    def views(self) -> list[dict]:
        """Every measured filesystem as the API shows it, in the file's order of its paths."""
        return [fs.view(self.config) for fs in self.filesystems.values()]


def threshold_event(fs: FilesystemLevel, action: str, level: Level, daemon: str,
                    at: dt.datetime) -> dict:
    """A STORAGE_THRESHOLD_EVENT as SPEC §9 (and MediaSense) spell it;
    ``level`` is the level after this step."""
    return {"eventType": "STORAGE_THRESHOLD_EVENT", "eventAction": action, "path": fs.paths[0],
            "filesystem": fs.filesystem,
            "percentageUtilization": round(fs.usage.ratio() * 100, 1),
            "level": level.label, "daemon": daemon, "at": clock.iso(at)}
