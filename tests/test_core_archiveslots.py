"""The archive scheduler's decision (``core.archiveslots``), driven by an
injected clock: slots passed while no daemon ran are missed (never run), the
latest slot since the daemon took the schedule on runs, a stalled tick runs
only the latest slot, once tasks run once ("now" when first seen, a time when
it comes) and never again; next_run for every kind."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from synchrod.core.archiveslots import MAX_MISSED, next_run, plan
from synchrod.core.schedule import Schedule

UTC = dt.timezone.utc
PRAGUE = ZoneInfo("Europe/Prague")
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOURLY = Schedule("hourly", ":15")
DAILY = Schedule("daily", "02:00")


def h(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def test_nothing_due_between_slots():
    p = plan(HOURLY, UTC, last_handled=h(0), active_since=h(0), now=h(0.2))
    assert p.missed == () and p.due is None and p.handled_until is None


def test_the_slot_runs_when_it_comes():
    p = plan(HOURLY, UTC, last_handled=h(0), active_since=h(0), now=h(0.26))
    assert p.due == h(0.25) and p.missed == () and p.handled_until == h(0.25)
    # the next tick: nothing again
    assert plan(HOURLY, UTC, last_handled=h(0.25), active_since=h(0), now=h(0.3)).due is None


def test_slots_passed_while_no_daemon_ran_are_missed_not_run():
    # handled until 12:00, the daemon was down until 17:40
    p = plan(HOURLY, UTC, last_handled=h(0), active_since=h(5.67), now=h(5.67))
    assert p.due is None and p.missed == tuple(h(k + 0.25) for k in range(6))   # 12:15..17:15
    assert p.handled_until == h(5.25)
    # then 18:15 runs as usual
    p = plan(HOURLY, UTC, last_handled=h(5.25), active_since=h(5.67), now=h(6.3))
    assert p.due == h(6.25) and p.missed == ()


def test_a_stalled_tick_runs_only_the_latest_slot():
    p = plan(HOURLY, UTC, last_handled=h(0), active_since=h(0), now=h(3.3))
    assert p.due == h(3.25) and p.missed == (h(0.25), h(1.25), h(2.25))


def test_a_long_downtime_records_at_most_max_missed():
    p = plan(HOURLY, UTC, last_handled=h(0), active_since=h(24 * 365), now=h(24 * 365))
    assert len(p.missed) == MAX_MISSED and p.due is None
    assert p.missed[-1] == h(24 * 365 - 0.75) and p.handled_until == p.missed[-1]


def test_daily_in_a_time_zone():
    last = dt.datetime(2026, 12, 1, 0, 0, tzinfo=PRAGUE)
    p = plan(DAILY, PRAGUE, last_handled=last, active_since=last, now=last + dt.timedelta(hours=3))
    assert p.due == dt.datetime(2026, 12, 1, 2, 0, tzinfo=PRAGUE)


def test_once_now_runs_when_first_seen_and_never_again():
    once = Schedule("once", "now")
    p = plan(once, UTC, last_handled=h(0), active_since=h(0), now=h(0))
    assert p.due == h(0) and p.once_done
    assert plan(once, UTC, last_handled=h(0), active_since=h(0), now=h(1), once_done=True) == type(p)()


def test_once_now_seen_before_a_crash_is_missed_after_it():
    once = Schedule("once", "now")
    p = plan(once, UTC, last_handled=h(0), active_since=h(2), now=h(2))
    assert p.due is None and p.missed == (h(0),) and p.once_done


def test_once_at_a_time():
    once = Schedule("once", "2026-12-01T15:00:00+00:00")
    assert plan(once, UTC, last_handled=h(0), active_since=h(0), now=h(2)).due is None
    p = plan(once, UTC, last_handled=h(0), active_since=h(0), now=h(3.01))
    assert p.due == h(3) and p.once_done
    # the daemon was stopped across its time: missed
    p = plan(once, UTC, last_handled=h(0), active_since=h(4), now=h(4))
    assert p.missed == (h(3),) and p.due is None and p.once_done
    # a time that passed before the definition appeared (at a start or a reload): nothing
    # to run nor to miss, and decided so: it is not shown as due for ever after
    for active_since in (h(5), h(0)):
        p = plan(once, UTC, last_handled=h(5), active_since=active_since, now=h(5))
        assert p == type(p)(handled_until=h(5), once_done=True)
        assert next_run(once, UTC, h(5), once_done=p.once_done) is None


def test_next_run():
    assert next_run(HOURLY, UTC, h(0)) == h(0.25)
    assert next_run(DAILY, PRAGUE, h(0)) == dt.datetime(2026, 12, 2, 2, 0, tzinfo=PRAGUE)
    assert next_run(Schedule("once", "now"), UTC, h(1), seen_at=h(0)) == h(0)
    assert next_run(Schedule("once", "now"), UTC, h(1), once_done=True) is None
    assert next_run(Schedule("once", "2026-12-02T10:00:00"), PRAGUE, h(0)) == \
        dt.datetime(2026, 12, 2, 10, 0, tzinfo=PRAGUE)
