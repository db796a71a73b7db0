"""Choice of a target path for a new file (SPEC §5).

A path whose filesystem use is at or above its watermark takes no new file.
Among the rest the highest priority wins; paths of equal priority share new
bytes in proportion to their ``balance``. Bytes planned in this run count as
used, so one batch cannot overshoot a watermark; paths on one filesystem
share that filesystem's accounting.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class PathSpec(Protocol):
    path: str
    priority: int
    balance: float
    watermark: int


@dataclass(frozen=True, slots=True)
class FsUsage:
    """A filesystem as ``df`` sees it: ``used`` counts toward ``capacity``
    (blocks reserved for root excluded, as in df's Use%)."""
    fs_id: int
    capacity: int
    used: int

    def ratio(self, extra: int = 0) -> float:
        """Share of the capacity used, with ``extra`` bytes more; 1.0 (full) when the
        capacity is unknown."""
        return (self.used + extra) / self.capacity if self.capacity > 0 else 1.0

    def at_or_above(self, watermark: int, extra: int = 0) -> bool:
        """Use (with ``extra`` bytes more) at or above ``watermark`` percent;
        integer arithmetic, so exactly-at is never lost to rounding."""
        return self.capacity <= 0 or (self.used + extra) * 100 >= watermark * self.capacity


class Placer:
    """Stateful within a run: remembers bytes handed to each path.

    ``usage`` maps each path to its filesystem usage; a path without usage
    (missing, unreadable) takes nothing.
    """

    def __init__(self, paths: Sequence[PathSpec], usage: Mapping[str, FsUsage],
                 shared: dict[str, int] | None = None):
        self.paths = list(paths)
        self.usage = dict(usage)
        self.planned: dict[int, int] = {}              # fs_id -> bytes planned this run
        self.given = shared if shared is not None else {}  # path -> bytes ever given (balance)

    def accepts(self, spec: PathSpec, size: int) -> bool:
        """True when ``spec``'s filesystem is known, below the watermark counting the bytes
        planned this run, and has room for ``size`` bytes more."""
        fs = self.usage.get(spec.path)
        if fs is None or fs.capacity <= 0:
            return False
        planned = self.planned.get(fs.fs_id, 0)
        if fs.at_or_above(spec.watermark, planned):
            return False
        return fs.used + planned + size <= fs.capacity

    def place(self, size: int) -> str | None:
        """The path for a new file of ``size`` bytes, or None when all are full."""
        open_paths = [p for p in self.paths if self.accepts(p, size)]
        if not open_paths:
            return None
        top = max(p.priority for p in open_paths)
        tier = [p for p in open_paths if p.priority == top]
        # weighted fair share: the path furthest below its share gets the file
        best = min(tier, key=lambda p: (self.given.get(p.path, 0) + size) / p.balance)
        fs = self.usage[best.path]
        self.planned[fs.fs_id] = self.planned.get(fs.fs_id, 0) + size
        self.given[best.path] = self.given.get(best.path, 0) + size
        return best.path

    def full(self) -> bool:
        """True when no path takes even an empty file (every one missing or at its watermark)."""
        return not any(self.accepts(p, 0) for p in self.paths)
