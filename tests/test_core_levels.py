"""Storage levels (core.levels): hysteresis, every transition both ways,
the events of multi-level changes, and what each level does."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from synchrod.core.levels import (Band, Level, Mode, Thresholds, abandons_copies, accepting,
                                  crossings, next_level)

T = Thresholds(Band(75, 70), Band(90, 87), Band(99, 97))   # SPEC §9's defaults
CAP = 1000


def at(percent: float, level: Level = Level.NORMAL) -> Level:
    return next_level(level, int(percent * CAP / 100), CAP, T)


@pytest.mark.parametrize("percent,level", [(0, Level.NORMAL), (74.9, Level.NORMAL),
                                           (75, Level.WARNING), (89.9, Level.WARNING),
                                           (90, Level.CRITICAL), (98.9, Level.CRITICAL),
                                           (99, Level.EMERGENCY), (100, Level.EMERGENCY)])
def test_entered_at_enter(percent, level):
    assert at(percent) is level


def test_hysteresis_every_level_both_ways():
    # up
    assert at(80, Level.NORMAL) is Level.WARNING
    assert at(92, Level.WARNING) is Level.CRITICAL
    assert at(99.5, Level.CRITICAL) is Level.EMERGENCY
    # held between exit and enter
    assert at(98, Level.EMERGENCY) is Level.EMERGENCY
    assert at(88, Level.CRITICAL) is Level.CRITICAL        # SPEC: 88 % after critical stays critical
    assert at(72, Level.WARNING) is Level.WARNING
    # exactly at exit is not below it
    assert at(97, Level.EMERGENCY) is Level.EMERGENCY
    assert at(87, Level.CRITICAL) is Level.CRITICAL
    assert at(70, Level.WARNING) is Level.WARNING
    # down
    assert at(96.9, Level.EMERGENCY) is Level.CRITICAL
    assert at(86.9, Level.CRITICAL) is Level.WARNING
    assert at(69.9, Level.WARNING) is Level.NORMAL


def test_a_fall_passes_every_level_whose_exit_it_is_below():
    assert at(50, Level.EMERGENCY) is Level.NORMAL
    assert at(80, Level.EMERGENCY) is Level.WARNING     # below 97 and 87, not below 70
    assert at(88, Level.EMERGENCY) is Level.CRITICAL


def test_unknown_capacity_counts_as_full():
    assert next_level(Level.NORMAL, 0, 0, T) is Level.EMERGENCY


def test_crossings_one_event_per_level_in_order():
    assert crossings(Level.NORMAL, Level.CRITICAL) == [
        ("ENTER_LOW_STORAGE_SPACE", Level.WARNING), ("ENTER_CRITICAL_STORAGE_SPACE", Level.CRITICAL)]
    assert crossings(Level.EMERGENCY, Level.NORMAL) == [
        ("EXIT_EMERGENCY_STORAGE_SPACE", Level.CRITICAL), ("EXIT_CRITICAL_STORAGE_SPACE", Level.WARNING),
        ("EXIT_LOW_STORAGE_SPACE", Level.NORMAL)]
    assert crossings(Level.WARNING, Level.WARNING) == []


def test_what_each_level_does():
    r, p = Mode.RETENTION_PRIORITY, Mode.RECORDING_PRIORITY
    assert [accepting(r, lv) for lv in Level] == [True, True, False, False]
    assert [accepting(p, lv) for lv in Level] == [True, True, True, False]
    assert [abandons_copies(lv) for lv in Level] == [False, False, False, True]
    assert [lv.label for lv in Level] == ["normal", "warning", "critical", "emergency"]


@given(st.lists(st.integers(0, CAP), min_size=1, max_size=50))
def test_levels_follow_use_with_hysteresis(uses):
    """Whatever the sequence of measurements: the level never lies below
    what the use reaches, never above it except within a band, and moving
    from it to the next gives exactly the crossings between them."""
    level = Level.NORMAL
    for used in uses:
        new = next_level(level, used, CAP, T)
        pct = used * 100 / CAP
        reached = max([lv for lv in Level if lv and pct >= T.band(lv).enter], default=Level.NORMAL)
        assert new >= reached
        if new > reached:   # held only by hysteresis: at or above the held level's exit
            assert pct >= T.band(new).exit and new <= level
        steps = crossings(level, new)
        assert len(steps) == abs(new - level)
        assert (steps[-1][1] if steps else level) is new
        level = new
