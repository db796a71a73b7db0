"""The source state machine (core.states), exhaustively: every event in
every state, and the vocabulary the reports share."""
from __future__ import annotations

import json

import pytest

from synchrod.core.states import (COUNT_KEYS, OUTCOMES, TRANSITIONS, CallOutcome, CycleState,
                                  SourceEvent, SourceLifecycle, SourceState)

S, E = SourceState, SourceEvent

#: (event, state before) -> state after, written out by hand from SPEC §8 and
#: the daemon's rules; anything not listed keeps its state
EXPECTED = {
    **{(E.CYCLE_STARTED, s): S.RUNNING for s in S},
    **{(E.CYCLE_SUCCEEDED, s): S.WAITING for s in S},
    **{(E.CYCLE_FAILED, s): S.DOWN for s in S},
    **{(E.NOT_OWNED, s): S.STANDBY for s in S},
    **{(E.PAUSED, s): S.PAUSED for s in S},
    (E.RESUMED, S.PAUSED): S.WAITING,
    **{(E.DISABLED, s): S.DISABLED for s in S},
    # through the API a cycle in hand finishes first: it stays running
    **{(E.DISABLED_BY_API, s): S.DISABLED for s in S if s is not S.RUNNING},
    (E.ENABLED, S.DISABLED): S.WAITING,
}


@pytest.mark.parametrize("event", list(E))
@pytest.mark.parametrize("before", list(S))
def test_every_event_in_every_state(event, before):
    machine = SourceLifecycle(before)
    assert machine.on(event) is EXPECTED.get((event, before), before)
    assert machine.state is EXPECTED.get((event, before), before)


def test_every_event_has_a_transition():
    assert set(TRANSITIONS) == set(E)


def test_a_new_source_waits():
    assert SourceLifecycle().state is S.WAITING


def test_a_source_disabled_during_its_cycle_through_the_api_finishes_it():
    m = SourceLifecycle()
    m.on(E.CYCLE_STARTED)
    m.on(E.DISABLED_BY_API)
    assert m.state is S.RUNNING
    m.on(E.CYCLE_SUCCEEDED)
    m.on(E.DISABLED_BY_API)
    assert m.state is S.DISABLED


def test_resume_and_enable_leave_other_states_alone():
    for state in (S.WAITING, S.DOWN, S.STANDBY, S.RUNNING):
        assert SourceLifecycle(state).on(E.RESUMED) is state
        assert SourceLifecycle(state).on(E.ENABLED) is state


def test_states_are_the_strings_reports_show():
    # StrEnum: equal to, formatted and serialised as the plain strings
    assert S.RUNNING == "running" and f"{CycleState.DOWN}" == "down"
    assert json.dumps({"state": CycleState.IDLE}) == '{"state": "idle"}'
    assert [s.value for s in S] == ["waiting", "running", "paused", "disabled", "down", "standby"]


def test_outcomes_are_named_once():
    assert OUTCOMES == ("synchronized", "not_used", "erroneous", "failed", "skipped")
    assert COUNT_KEYS == ("taken", *OUTCOMES)
    assert {o for o in CallOutcome if o.settled} == {CallOutcome.SYNCHRONIZED,
                                                     CallOutcome.NOT_USED, CallOutcome.ERRONEOUS}
    assert {c for c in CycleState if c.failed} == {CycleState.DOWN, CycleState.ERROR}
