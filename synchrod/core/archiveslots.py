"""Which of a task's slots run, and which are recorded as missed (SPEC §10):
the pure decision the archive scheduler takes at each tick.

No backfill: a slot that came while no daemon ran archive tasks (before
``active_since``, the moment this daemon took the schedule on) is recorded
``missed``, never run. Of the slots since, the latest runs (a tick is late
by a few seconds at most: several due at once only after a stall, and then
the earlier ones are missed too). A ``once`` task's slot is its time, or
the moment its definition was first seen for ``now``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .schedule import Schedule, next_slot, once_time, slots_between

MAX_MISSED = 1000   # missed slots recorded after a long downtime (the latest ones)


@dataclass(frozen=True)
class SlotPlan:
    """This tick's decision for one task."""
    missed: tuple[dt.datetime, ...] = field(default_factory=tuple)
    due: dt.datetime | None = None          # the slot to run now
    handled_until: dt.datetime | None = None  # the latest slot decided (run or missed)
    once_done: bool = False                 # a once task's slot was decided


def plan(schedule: Schedule, tz: dt.tzinfo, *, last_handled: dt.datetime,
         active_since: dt.datetime, now: dt.datetime, once_done: bool = False) -> SlotPlan:
    """The slots in (``last_handled``, ``now``]: those before
    ``active_since`` missed, the latest one since then due. For a once task:
    its time (``last_handled`` is when its definition was seen: "now" runs
    then) unless ``once_done``."""
    if schedule.kind == "once":
        if once_done:
            return SlotPlan()
        at = once_time(schedule, tz) or last_handled
        if at > now:
            return SlotPlan()
        if at < last_handled:
            # before the definition existed: nothing to run nor miss, and decided so (it
            # would otherwise show as due forever)
            return SlotPlan(handled_until=last_handled, once_done=True)
        if at < active_since:
            return SlotPlan(missed=(at,), handled_until=at, once_done=True)
        return SlotPlan(due=at, handled_until=at, once_done=True)
    slots = slots_between(schedule, tz, last_handled, now, limit=MAX_MISSED + 1)
    if not slots:
        return SlotPlan()
    missed = [s for s in slots if s < active_since]
    since = [s for s in slots if s >= active_since]
    missed += since[:-1]        # a stalled tick runs the latest slot only
    return SlotPlan(missed=tuple(missed[-MAX_MISSED:]), due=since[-1] if since else None,
                    handled_until=slots[-1])


def next_run(schedule: Schedule, tz: dt.tzinfo, now: dt.datetime, *,
             once_done: bool = False, seen_at: dt.datetime | None = None) -> dt.datetime | None:
    """When the task runs next: the next future slot; a once task's time
    (or, for "now", when it was seen) until it has run."""
    if schedule.kind == "once":
        if once_done:
            return None
        return once_time(schedule, tz) or seen_at or now
    return next_slot(schedule, tz, now)
