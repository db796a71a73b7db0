"""Archive task schedules (core.schedule, SPEC §10 "Schedules"): every kind's
slots, month ends, daylight saving in Prague and New York, the bounds and the
limit of slots_between, problems, once tasks, and a randomised check that
next_slot and slots_between agree."""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
import time
import zoneinfo

import pytest

from synchrod.core.schedule import (KINDS, PERIODS, WEEKDAYS, Schedule, next_slot, once_problem,
                                    once_time, problems, slots_between)

UTC = dt.timezone.utc
PRAGUE = zoneinfo.ZoneInfo("Europe/Prague")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
HOURLY = Schedule("hourly", ":15")
DAILY = Schedule("daily", "02:30")
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def u(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def local(tz, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


def hm(instants) -> list[str]:
    return [s.strftime("%d %H:%M") for s in instants]


def assert_utc(instants):
    for s in instants:
        assert s.tzinfo is UTC


# --- the API's shape -------------------------------------------------------------------------

def test_kinds_and_weekdays():
    assert KINDS == ("once", "hourly", "daily", "weekly", "monthly")
    assert WEEKDAYS == ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                        "sunday")


def test_schedule_is_frozen_with_defaults():
    s = Schedule("daily", "02:00")
    assert (s.weekday, s.day) == (None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.at = "03:00"
    assert not hasattr(s, "__dict__")


# --- hourly ----------------------------------------------------------------------------------

def test_hourly_next_and_exactly_at_a_slot():
    assert next_slot(HOURLY, UTC, u(2026, 5, 1, 10, 0)) == u(2026, 5, 1, 10, 15)
    assert next_slot(HOURLY, UTC, u(2026, 5, 1, 10, 15)) == u(2026, 5, 1, 11, 15)
    assert next_slot(HOURLY, UTC, u(2026, 5, 1, 10, 14, 59, 999999)) == u(2026, 5, 1, 10, 15)
    assert next_slot(HOURLY, UTC, u(2026, 5, 1, 10, 15, 0, 1)) == u(2026, 5, 1, 11, 15)
    top = Schedule("hourly", ":00")
    assert next_slot(top, UTC, u(2026, 5, 1, 10, 0)) == u(2026, 5, 1, 11, 0)
    assert next_slot(Schedule("hourly", ":59"), UTC, u(2026, 5, 1, 10, 0)) == u(2026, 5, 1, 10, 59)


def test_hourly_across_midnight_and_the_year_end():
    assert next_slot(HOURLY, UTC, u(2026, 5, 1, 23, 30)) == u(2026, 5, 2, 0, 15)
    assert next_slot(HOURLY, UTC, u(2026, 12, 31, 23, 15)) == u(2027, 1, 1, 0, 15)
    got = slots_between(HOURLY, PRAGUE, u(2026, 12, 31, 21, 0), u(2027, 1, 1, 1, 0))
    assert [s.astimezone(PRAGUE).strftime("%Y-%m-%d %H:%M") for s in got] == [
        "2026-12-31 22:15", "2026-12-31 23:15", "2027-01-01 00:15", "2027-01-01 01:15"]
    assert_utc(got)


def test_hourly_in_a_half_hour_zone():
    kolkata = zoneinfo.ZoneInfo("Asia/Kolkata")
    assert next_slot(HOURLY, kolkata, u(2026, 5, 1, 10, 0)) == u(2026, 5, 1, 10, 45)


# --- daily -----------------------------------------------------------------------------------

def test_daily_before_at_and_after_the_slot():
    s = Schedule("daily", "02:00")
    assert next_slot(s, UTC, u(2026, 5, 1, 1, 59)) == u(2026, 5, 1, 2, 0)
    assert next_slot(s, UTC, u(2026, 5, 1, 2, 0)) == u(2026, 5, 2, 2, 0)
    assert next_slot(s, UTC, u(2026, 5, 1, 3, 0)) == u(2026, 5, 2, 2, 0)
    assert next_slot(s, UTC, u(2026, 12, 31, 3, 0)) == u(2027, 1, 1, 2, 0)
    # wall-clock time in the task's zone; the answer in UTC
    got = next_slot(s, PRAGUE, u(2026, 7, 1, 12, 0))
    assert got == u(2026, 7, 2, 0, 0) and got.tzinfo is UTC
    midnight, late = Schedule("daily", "00:00"), Schedule("daily", "23:59")
    assert next_slot(midnight, PRAGUE, u(2026, 1, 1, 0, 0)) == u(2026, 1, 1, 23, 0)
    assert next_slot(late, UTC, u(2026, 1, 1, 23, 59)) == u(2026, 1, 2, 23, 59)


def test_after_in_another_offset_is_the_same_instant():
    after = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))   # 03:00Z
    assert next_slot(Schedule("daily", "04:00"), UTC, after) == u(2026, 5, 1, 4, 0)


# --- weekly ----------------------------------------------------------------------------------

@pytest.mark.parametrize("weekday", WEEKDAYS)
def test_weekly_each_weekday(weekday):
    s = Schedule("weekly", "02:00", weekday=weekday)
    after = u(2026, 4, 1, 12, 0)                       # a Wednesday
    got = next_slot(s, UTC, after)
    assert got.weekday() == WEEKDAYS.index(weekday) and (got.hour, got.minute) == (2, 0)
    assert after < got <= after + dt.timedelta(days=7)
    assert next_slot(s, UTC, got) == got + dt.timedelta(days=7)
    assert next_slot(s, UTC, got - dt.timedelta(microseconds=1)) == got


def test_weekly_same_day_before_and_after_the_time():
    s = Schedule("weekly", "12:30", weekday="wednesday")
    assert next_slot(s, UTC, u(2026, 4, 1, 12, 0)) == u(2026, 4, 1, 12, 30)
    assert next_slot(s, UTC, u(2026, 4, 1, 13, 0)) == u(2026, 4, 8, 12, 30)
    assert next_slot(s, UTC, u(2026, 12, 31, 0, 0)) == u(2027, 1, 6, 12, 30)


# --- monthly ---------------------------------------------------------------------------------

def test_monthly_day_28_in_february_and_a_leap_year():
    s = Schedule("monthly", "03:00", day=28)
    assert next_slot(s, UTC, u(2026, 2, 1, 0, 0)) == u(2026, 2, 28, 3, 0)
    assert next_slot(s, UTC, u(2026, 2, 28, 3, 0)) == u(2026, 3, 28, 3, 0)
    assert next_slot(s, UTC, u(2028, 2, 28, 3, 0)) == u(2028, 3, 28, 3, 0)   # not the 29th
    assert next_slot(s, UTC, u(2028, 1, 31, 0, 0)) == u(2028, 2, 28, 3, 0)
    got = slots_between(s, UTC, u(2027, 12, 31), u(2028, 12, 31))
    assert [(g.month, g.day) for g in got] == [(m, 28) for m in range(1, 13)]


def test_monthly_day_one_and_the_year_end():
    s = Schedule("monthly", "00:00", day=1)
    assert next_slot(s, UTC, u(2026, 12, 1, 0, 0)) == u(2027, 1, 1, 0, 0)
    assert next_slot(s, UTC, u(2026, 11, 30, 23, 59)) == u(2026, 12, 1, 0, 0)
    # 00:00 in Prague on the 1st is the evening before in UTC
    assert next_slot(s, PRAGUE, u(2026, 12, 15)) == u(2026, 12, 31, 23, 0)


# --- daylight saving -------------------------------------------------------------------------

def test_daily_in_the_prague_spring_gap_runs_once_at_three():
    got = slots_between(DAILY, PRAGUE, u(2026, 3, 27), u(2026, 3, 31))
    assert got == [u(2026, 3, 27, 1, 30), u(2026, 3, 28, 1, 30), u(2026, 3, 29, 1, 0),
                   u(2026, 3, 30, 0, 30)]
    gap_day = got[2].astimezone(PRAGUE)
    assert (gap_day.hour, gap_day.minute, gap_day.utcoffset()) == (3, 0, dt.timedelta(hours=2))
    assert next_slot(DAILY, PRAGUE, u(2026, 3, 28, 1, 30)) == u(2026, 3, 29, 1, 0)
    assert next_slot(DAILY, PRAGUE, u(2026, 3, 29, 1, 0)) == u(2026, 3, 30, 0, 30)


def test_daily_in_the_prague_fall_back_runs_once_at_the_first_0230():
    got = slots_between(DAILY, PRAGUE, u(2026, 10, 24), u(2026, 10, 27))
    assert got == [u(2026, 10, 24, 0, 30), u(2026, 10, 25, 0, 30), u(2026, 10, 26, 1, 30)]
    first = got[1].astimezone(PRAGUE)
    assert (first.hour, first.minute, first.utcoffset()) == (2, 30, dt.timedelta(hours=2))
    # the second 02:30 (01:30Z, +01:00) is no slot
    assert next_slot(DAILY, PRAGUE, u(2026, 10, 25, 0, 30)) == u(2026, 10, 26, 1, 30)
    assert next_slot(DAILY, PRAGUE, u(2026, 10, 25, 1, 0)) == u(2026, 10, 26, 1, 30)


def test_daily_in_new_york_both_transitions():
    spring = slots_between(DAILY, NEW_YORK, u(2026, 3, 7), u(2026, 3, 10))
    assert spring == [u(2026, 3, 7, 7, 30), u(2026, 3, 8, 7, 0), u(2026, 3, 9, 6, 30)]
    assert spring[1].astimezone(NEW_YORK).strftime("%H:%M%z") == "03:00-0400"
    fall = slots_between(DAILY, NEW_YORK, u(2026, 10, 31), u(2026, 11, 3))
    assert fall == [u(2026, 10, 31, 6, 30), u(2026, 11, 1, 7, 30), u(2026, 11, 2, 7, 30)]
    # 01:30 exists twice in New York on 2026-11-01: once, at its first (EDT) occurrence
    twice = slots_between(Schedule("daily", "01:30"), NEW_YORK, u(2026, 10, 31), u(2026, 11, 3))
    assert twice == [u(2026, 10, 31, 5, 30), u(2026, 11, 1, 5, 30), u(2026, 11, 2, 6, 30)]


def test_hourly_across_the_prague_transitions():
    spring = slots_between(HOURLY, PRAGUE, u(2026, 3, 28, 22), u(2026, 3, 29, 4))
    assert spring == [u(2026, 3, 28, 22, 15), u(2026, 3, 28, 23, 15), u(2026, 3, 29, 0, 15),
                      u(2026, 3, 29, 1, 0), u(2026, 3, 29, 1, 15), u(2026, 3, 29, 2, 15),
                      u(2026, 3, 29, 3, 15)]
    assert [s.astimezone(PRAGUE).strftime("%H:%M") for s in spring] == [
        "23:15", "00:15", "01:15", "03:00", "03:15", "04:15", "05:15"]   # 02:15 is 03:00
    fall = slots_between(HOURLY, PRAGUE, u(2026, 10, 24, 22), u(2026, 10, 25, 4))
    assert fall == [u(2026, 10, 24, 22, 15), u(2026, 10, 24, 23, 15), u(2026, 10, 25, 0, 15),
                    u(2026, 10, 25, 2, 15), u(2026, 10, 25, 3, 15)]     # 02:15 once, +02:00
    for got in (spring, fall):
        assert got == sorted(set(got)) and len(got) == len(set(got))
        assert_utc(got)


def test_hourly_across_the_new_york_transitions():
    spring = slots_between(HOURLY, NEW_YORK, u(2026, 3, 8, 4), u(2026, 3, 8, 10))
    assert hm(spring) == ["08 04:15", "08 05:15", "08 06:15", "08 07:00", "08 07:15", "08 08:15",
                          "08 09:15"]
    fall = slots_between(HOURLY, NEW_YORK, u(2026, 11, 1, 3), u(2026, 11, 1, 9))
    assert hm(fall) == ["01 03:15", "01 04:15", "01 05:15", "01 07:15", "01 08:15"]
    for got in (spring, fall):
        assert got == sorted(set(got))


def test_next_slot_from_inside_the_repeated_hour():
    # 02:20 the second time (01:20Z, +01:00): 02:15 has run already; next is 03:15 CET
    assert next_slot(HOURLY, PRAGUE, u(2026, 10, 25, 1, 20)) == u(2026, 10, 25, 2, 15)
    # 02:20 the first time (00:20Z): the next is still 03:15 CET, the second 02:15 is skipped
    assert next_slot(HOURLY, PRAGUE, u(2026, 10, 25, 0, 20)) == u(2026, 10, 25, 2, 15)
    assert next_slot(HOURLY, PRAGUE, u(2026, 10, 25, 0, 10)) == u(2026, 10, 25, 0, 15)


def test_a_skipped_day_collapses_into_one_slot():
    apia = zoneinfo.ZoneInfo("Pacific/Apia")   # 2011-12-30 did not exist there
    got = slots_between(HOURLY, apia, u(2011, 12, 30, 8), u(2011, 12, 30, 12))
    assert [s.astimezone(apia).strftime("%d %H:%M") for s in got] == [
        "29 22:15", "29 23:15", "31 00:00", "31 00:15", "31 01:15"]
    daily = slots_between(DAILY, apia, u(2011, 12, 29), u(2011, 12, 31))
    assert [s.astimezone(apia).strftime("%d %H:%M") for s in daily] == [
        "29 02:30", "31 00:00", "31 02:30"]


# --- slots_between ---------------------------------------------------------------------------

def test_slots_between_exclusive_start_inclusive_end():
    s = Schedule("daily", "02:00")
    assert slots_between(s, UTC, u(2026, 5, 1, 2), u(2026, 5, 3, 2)) == [u(2026, 5, 2, 2),
                                                                           u(2026, 5, 3, 2)]
    assert slots_between(s, UTC, u(2026, 5, 1, 1), u(2026, 5, 1, 2)) == [u(2026, 5, 1, 2)]
    assert slots_between(s, UTC, u(2026, 5, 1, 2), u(2026, 5, 1, 2)) == []
    assert slots_between(s, UTC, u(2026, 5, 1, 3), u(2026, 5, 2, 1)) == []
    assert slots_between(s, UTC, u(2026, 5, 3), u(2026, 5, 1)) == []


def test_slots_between_limit_keeps_the_last_ones():
    start, end = u(2026, 5, 1), u(2026, 5, 2)
    every = slots_between(HOURLY, UTC, start, end)
    assert len(every) == 24
    assert slots_between(HOURLY, UTC, start, end, limit=5) == every[-5:]
    assert slots_between(HOURLY, UTC, start, end, limit=1) == [u(2026, 5, 1, 23, 15)]
    assert slots_between(HOURLY, UTC, start, end, limit=24) == every
    assert slots_between(HOURLY, UTC, start, end, limit=100) == every
    assert slots_between(HOURLY, UTC, start, end, limit=0) == []
    monthly = Schedule("monthly", "02:00", day=15)
    year = slots_between(monthly, PRAGUE, u(2026, 1, 1), u(2027, 1, 1), limit=3)
    assert [s.month for s in year] == [10, 11, 12]


def test_ten_years_of_hourly_is_fast():
    began = time.perf_counter()
    got = slots_between(HOURLY, PRAGUE, u(2016, 1, 1), u(2026, 1, 1))
    assert time.perf_counter() - began < 0.5
    assert len(got) == 1000 and got[-1] == u(2025, 12, 31, 23, 15)
    assert got == sorted(set(got))
    # no DST in the tail: one hour apart each
    assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(got))
    began = time.perf_counter()
    daily = slots_between(DAILY, NEW_YORK, u(2016, 1, 1), u(2026, 1, 1), limit=5000)
    assert time.perf_counter() - began < 0.5
    assert len(daily) == 3653 and daily[0] == u(2016, 1, 1, 7, 30)


def test_once_has_no_slots():
    once = Schedule("once", "now")
    assert next_slot(once, UTC, NOW) is None
    assert slots_between(once, UTC, NOW, NOW + dt.timedelta(days=30)) == []
    assert next_slot(Schedule("once", "2026-03-02T10:00"), UTC, NOW) is None


@pytest.mark.parametrize("bad", [dt.datetime(2026, 5, 1), "2026-05-01"])
def test_naive_times_are_refused(bad):
    with pytest.raises(ValueError):
        next_slot(HOURLY, UTC, bad)
    with pytest.raises(ValueError):
        slots_between(HOURLY, UTC, bad, NOW)
    with pytest.raises(ValueError):
        slots_between(HOURLY, UTC, NOW, bad)
    with pytest.raises(ValueError):
        problems(HOURLY, UTC, bad)
    with pytest.raises(ValueError):
        once_problem(Schedule("once", "now"), UTC, bad)


@pytest.mark.parametrize("schedule", [Schedule("yearly", "02:00"), Schedule("daily", "2:00"),
                                      Schedule("hourly", "15"), Schedule("weekly", "02:00"),
                                      Schedule("monthly", "02:00"),
                                      Schedule("monthly", "02:00", day=31)])
def test_a_malformed_schedule_has_no_slots(schedule):
    with pytest.raises(ValueError):
        next_slot(schedule, UTC, NOW)
    with pytest.raises(ValueError):
        slots_between(schedule, UTC, NOW, NOW)


# --- problems --------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [
    Schedule("once", "now"), Schedule("once", "2026-03-02T10:00"),
    Schedule("once", "2026-03-02T10:00:00+01:00"), Schedule("once", "2026-03-02T10:00Z"),
    Schedule("once", "2020-01-01T00:00"),          # the past is once_problem's, not problems'
    Schedule("once", "2030-01-01T00:00"),          # so is too far ahead
    Schedule("hourly", ":00"), Schedule("hourly", ":59"),
    Schedule("daily", "00:00"), Schedule("daily", "23:59"),
    *[Schedule("weekly", "12:00", weekday=w) for w in WEEKDAYS],
    Schedule("monthly", "02:00", day=1), Schedule("monthly", "02:00", day=28)])
def test_well_formed_schedules_have_no_problems(schedule):
    assert problems(schedule, PRAGUE, NOW) == []


@pytest.mark.parametrize("schedule,keys", [
    (Schedule("yearly", "02:00"), ["schedule"]),
    (Schedule("Daily", "02:00"), ["schedule"]),
    (Schedule("yearly", "nonsense", weekday="moonday", day=99), ["schedule"]),
    (Schedule("once", "tomorrow"), ["at"]),
    (Schedule("once", "Now"), ["at"]),
    (Schedule("once", ""), ["at"]),
    (Schedule("once", 120), ["at"]),
    (Schedule("once", "now", weekday="monday"), ["weekday"]),
    (Schedule("once", "now", day=1), ["day"]),
    (Schedule("hourly", "15"), ["at"]),
    (Schedule("hourly", ":60"), ["at"]),
    (Schedule("hourly", ":5"), ["at"]),
    (Schedule("hourly", "00:15"), ["at"]),
    (Schedule("hourly", ":15", weekday="monday", day=3), ["weekday", "day"]),
    (Schedule("daily", "24:00"), ["at"]),
    (Schedule("daily", "2:00"), ["at"]),
    (Schedule("daily", "02:60"), ["at"]),
    (Schedule("daily", "02:00:00"), ["at"]),
    (Schedule("daily", ":15"), ["at"]),
    (Schedule("daily", "٠٢:٠٠"), ["at"]),              # digits, but not ASCII ones
    (Schedule("daily", 120), ["at"]),
    (Schedule("daily", "02:00", weekday="monday"), ["weekday"]),
    (Schedule("daily", "02:00", day=1), ["day"]),
    (Schedule("weekly", "02:00"), ["weekday"]),
    (Schedule("weekly", "02:00", weekday="Monday"), ["weekday"]),
    (Schedule("weekly", "02:00", weekday="mon"), ["weekday"]),
    (Schedule("weekly", "02:00", weekday="sunday", day=1), ["day"]),
    (Schedule("weekly", "25:00", weekday="funday"), ["at", "weekday"]),
    (Schedule("monthly", "02:00"), ["day"]),
    (Schedule("monthly", "02:00", day=0), ["day"]),
    (Schedule("monthly", "02:00", day=29), ["day"]),
    (Schedule("monthly", "02:00", day=True), ["day"]),
    (Schedule("monthly", "02:00", day="1"), ["day"]),
    (Schedule("monthly", "02:00", weekday="monday", day=1), ["weekday"]),
    (Schedule("monthly", "2:00", weekday="monday", day=31), ["at", "weekday", "day"]),
])
def test_every_problem_has_its_key(schedule, keys):
    found = problems(schedule, PRAGUE, NOW)
    assert [key for key, _ in found] == keys
    assert all(isinstance(message, str) and message for _, message in found)


def test_problem_messages_say_what_is_wanted():
    [(_, message)] = problems(Schedule("weekly", "02:00", weekday="funday"), UTC, NOW)
    assert "funday" in message and "sunday" in message
    [(_, message)] = problems(Schedule("hourly", "15"), UTC, NOW)
    assert ":MM" in message and "'15'" in message


# --- once ------------------------------------------------------------------------------------

def test_once_time_naive_is_in_the_tasks_zone():
    assert once_time(Schedule("once", "2026-03-01T02:00"), PRAGUE) == u(2026, 3, 1, 1, 0)
    assert once_time(Schedule("once", "2026-07-01T02:00"), PRAGUE) == u(2026, 7, 1, 0, 0)
    assert once_time(Schedule("once", "2026-07-01T02:00"), NEW_YORK) == u(2026, 7, 1, 6, 0)
    assert once_time(Schedule("once", "2026-07-01"), PRAGUE) == u(2026, 6, 30, 22, 0)
    # in the gap: the first instant after it; twice: the first occurrence
    assert once_time(Schedule("once", "2026-03-29T02:30"), PRAGUE) == u(2026, 3, 29, 1, 0)
    assert once_time(Schedule("once", "2026-10-25T02:30"), PRAGUE) == u(2026, 10, 25, 0, 30)
    got = once_time(Schedule("once", "2026-03-01T02:00"), PRAGUE)
    assert got.tzinfo is UTC


def test_once_time_with_an_offset_keeps_it():
    assert once_time(Schedule("once", "2026-03-01T02:00+05:00"), PRAGUE) == u(2026, 2, 28, 21, 0)
    west = Schedule("once", "2026-03-01T02:00:30-03:30")
    assert once_time(west, PRAGUE) == u(2026, 3, 1, 5, 30, 30)
    got = once_time(Schedule("once", "2026-03-01T02:00Z"), PRAGUE)
    assert got == u(2026, 3, 1, 2, 0) and got.tzinfo is UTC


def test_once_time_now_other_kinds_and_malformed():
    assert once_time(Schedule("once", "now"), PRAGUE) is None
    assert once_time(Schedule("daily", "02:00"), PRAGUE) is None
    with pytest.raises(ValueError):
        once_time(Schedule("once", "tomorrow"), PRAGUE)


def test_once_problem_past_far_and_fine():
    def problem(at, tz=UTC):
        return once_problem(Schedule("once", at), tz, NOW)       # NOW: 2026-03-01 12:00Z
    assert "past" in problem("2026-03-01T11:59:59")
    assert "past" in problem("2020-01-01T00:00")
    assert problem("2026-03-01T12:00") is None                     # now itself is fine
    assert problem("2026-03-08T11:59:59.999999") is None
    assert "7 days" in problem("2026-03-08T12:00")
    assert "7 days" in problem("2027-01-01T00:00")
    # naive in the task's zone: 12:30 Prague is 11:30Z, in the past; 13:30 Prague is ahead
    assert "past" in problem("2026-03-01T12:30", PRAGUE)
    assert problem("2026-03-01T13:30", PRAGUE) is None
    assert problem("2026-03-01T13:30+01:00") is None
    assert problem("now") is None
    assert problem("tomorrow") is None                              # problems() reports that
    assert once_problem(Schedule("daily", "02:00"), UTC, NOW) is None


# --- next_slot and slots_between agree -------------------------------------------------------

ZONES = [UTC, PRAGUE, NEW_YORK, zoneinfo.ZoneInfo("Australia/Lord_Howe"),   # 30-minute DST
         zoneinfo.ZoneInfo("Asia/Kathmandu"), zoneinfo.ZoneInfo("America/Santiago")]


def _random_schedule(rng: random.Random) -> Schedule:
    kind = rng.choice(KINDS[1:])
    minute = rng.choice([0, 15, 30, 45, rng.randrange(60)])
    if kind == "hourly":
        return Schedule(kind, f":{minute:02d}")
    at = f"{rng.choice([0, 1, 2, 3, rng.randrange(24)]):02d}:{minute:02d}"
    if kind == "weekly":
        return Schedule(kind, at, weekday=rng.choice(WEEKDAYS))
    return Schedule(kind, at, day=rng.randint(1, 28)) if kind == "monthly" else Schedule(kind, at)


def _matches(schedule: Schedule, tz, slot: dt.datetime) -> bool:
    """The slot's wall clock is the schedule's, or the slot is a transition (a gap's end)."""
    wall = slot.astimezone(tz)
    before = (slot - dt.timedelta(seconds=1)).astimezone(tz)
    if wall.utcoffset() != before.utcoffset():
        return True
    hour, minute = (None, int(schedule.at[1:])) if schedule.kind == "hourly" else \
        (int(schedule.at[:2]), int(schedule.at[3:]))
    return (wall.minute == minute and (hour is None or wall.hour == hour)
            and (schedule.weekday is None or wall.weekday() == WEEKDAYS.index(schedule.weekday))
            and (schedule.day is None or wall.day == schedule.day))


def test_next_slot_and_slots_between_agree_at_random():
    rng = random.Random(20260329)
    transitions = [u(2026, 3, 29, 1), u(2026, 10, 25, 1), u(2026, 3, 8, 7), u(2026, 11, 1, 6),
                   u(2026, 4, 4, 15), u(2026, 10, 3, 15)]
    for _ in range(1500):
        schedule, tz = _random_schedule(rng), rng.choice(ZONES)
        if rng.random() < 0.5:
            after = rng.choice(transitions) + dt.timedelta(minutes=rng.randint(-180, 180))
        else:
            after = u(2010, 1, 1) + dt.timedelta(seconds=rng.randrange(25 * 365 * 86400))
        after += dt.timedelta(microseconds=rng.choice([0, 0, 1, 999999]))
        n = next_slot(schedule, tz, after)
        assert n > after and n.tzinfo is UTC
        assert slots_between(schedule, tz, after, n) == [n]
        assert slots_between(schedule, tz, after - PERIODS[schedule.kind] * 3, n)[-1] == n
        assert next_slot(schedule, tz, n - dt.timedelta(microseconds=1)) == n
        assert _matches(schedule, tz, n), (schedule, tz, after, n)


def test_a_chain_of_next_slots_is_slots_between():
    rng = random.Random(7)
    for _ in range(40):
        schedule, tz = _random_schedule(rng), rng.choice(ZONES)
        start = u(2026, 1, 1) + dt.timedelta(minutes=rng.randrange(365 * 24 * 60))
        end = start + {"hourly": dt.timedelta(days=3), "daily": dt.timedelta(days=20),
                       "weekly": dt.timedelta(days=90),
                       "monthly": dt.timedelta(days=400)}[schedule.kind]
        chain, s = [], next_slot(schedule, tz, start)
        while s <= end:
            chain.append(s)
            s = next_slot(schedule, tz, s)
        assert slots_between(schedule, tz, start, end) == chain
        assert slots_between(schedule, tz, start, end, limit=3) == chain[-3:]
