"""Storage levels of a filesystem with hysteresis, and what each level does
(SPEC §9, after Cisco MediaSense's space management). Pure: the use comes
in as bytes, the level and its events go out.

A level is entered when the use reaches its ``enter`` percentage and left
only when the use falls below its ``exit``: a filesystem at 88 % after
critical (enter 90, exit 87) stays critical. Comparisons are integer, so
exactly-at is never lost to rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Level(IntEnum):
    """A filesystem's storage level; the value is what the metric shows."""
    NORMAL = 0
    WARNING = 1
    CRITICAL = 2
    EMERGENCY = 3

    @property
    def label(self) -> str:
        """The level's name as the API and the events spell it (``critical``)."""
        return self.name.lower()


class Mode(StrEnum):
    """What space management favours when a filesystem fills."""
    RETENTION_PRIORITY = "retention_priority"   # keep recordings; stop taking new files
    RECORDING_PRIORITY = "recording_priority"   # keep recording; prune the oldest


@dataclass(frozen=True, slots=True)
class Band:
    """Percentages of use at which a level is entered, and below which it is left."""
    enter: int
    exit: int


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The bands of the three levels above normal (enter > exit for each;
    warning < critical < emergency)."""
    warning: Band
    critical: Band
    emergency: Band

    def band(self, level: Level) -> Band:
        """The band of a level above normal."""
        return {Level.WARNING: self.warning, Level.CRITICAL: self.critical,
                Level.EMERGENCY: self.emergency}[level]


def _at_or_above(used: int, capacity: int, percent: int) -> bool:
    return capacity <= 0 or used * 100 >= percent * capacity


def next_level(current: Level, used: int, capacity: int, t: Thresholds) -> Level:
    """The level after measuring ``used`` of ``capacity`` bytes: up to the
    highest level whose ``enter`` is reached, else down past every level
    whose ``exit`` the use is below, else unchanged. An unknown capacity
    (0) counts as full."""
    reached = max((lv for lv in (Level.WARNING, Level.CRITICAL, Level.EMERGENCY)
                   if _at_or_above(used, capacity, t.band(lv).enter)), default=Level.NORMAL)
    if reached > current:
        return reached
    level = current
    while level > Level.NORMAL and not _at_or_above(used, capacity, t.band(level).exit):
        level = Level(level - 1)
    return max(level, reached)


#: the MediaSense eventAction of entering and of leaving each level
_ACTIONS = {Level.WARNING: ("ENTER_LOW_STORAGE_SPACE", "EXIT_LOW_STORAGE_SPACE"),
            Level.CRITICAL: ("ENTER_CRITICAL_STORAGE_SPACE", "EXIT_CRITICAL_STORAGE_SPACE"),
            Level.EMERGENCY: ("ENTER_EMERGENCY_STORAGE_SPACE", "EXIT_EMERGENCY_STORAGE_SPACE")}


def crossings(before: Level, after: Level) -> list[tuple[str, Level]]:
    """(eventAction, level after that step) for each level passed from
    ``before`` to ``after``, in order: normal → critical is ENTER_LOW
    (warning), then ENTER_CRITICAL (critical)."""
    if after > before:
        return [(_ACTIONS[Level(lv)][0], Level(lv)) for lv in range(before + 1, after + 1)]
    return [(_ACTIONS[Level(lv)][1], Level(lv - 1)) for lv in range(before, after, -1)]


def accepting(mode: Mode, level: Level) -> bool:
    """Whether paths on a filesystem at ``level`` take new files: in
    retention priority not from critical on, in recording priority not at
    emergency (below it, pruning makes room instead)."""
    return level < (Level.CRITICAL if mode is Mode.RETENTION_PRIORITY else Level.EMERGENCY)


def abandons_copies(level: Level) -> bool:
    """At emergency, in either mode, copies in flight to the filesystem are
    abandoned (temporary files removed, calls left unmarked, no attempt)."""
    return level is Level.EMERGENCY


#: the alarm of each level above normal
ALARMS = {Level.WARNING: "storage_warning", Level.CRITICAL: "storage_critical",
          Level.EMERGENCY: "storage_emergency"}
