"""The states and outcomes synchrod speaks of, and the one state machine
that changes a source's state.

Every enum is a ``StrEnum``: its members are the very strings the API, the
history tables, the metrics and ``synchrod status`` show, so comparing with
or serialising them needs nothing.
"""
from __future__ import annotations

from enum import StrEnum


class SourceState(StrEnum):
    """What a source is doing now, as this daemon sees it (SPEC §8)."""
    WAITING = "waiting"     # between cycles
    RUNNING = "running"     # a cycle is under way
    PAUSED = "paused"       # paused through the API: no new cycle until resumed
    DISABLED = "disabled"   # disabled in the file or through the API
    DOWN = "down"           # its last cycle failed (database, mount, stall, error)
    STANDBY = "standby"     # another daemon works it


class DaemonState(StrEnum):
    """What the daemon process is doing (published for ``synchrod status``)."""
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


class CycleState(StrEnum):
    """How one cycle of one source ended."""
    OK = "ok"               # it took calls
    IDLE = "idle"           # nothing to take
    DOWN = "down"           # the recorder's database or mount could not be used
    ERROR = "error"         # synchrod or a database refused to go on
    STANDBY = "standby"     # not run: another daemon works the source

    @property
    def failed(self) -> bool:
        """True for DOWN and ERROR; an ok, idle or standby cycle did not fail."""
        return self in (CycleState.DOWN, CycleState.ERROR)


class CallOutcome(StrEnum):
    """What a cycle did with one call (one couple of the recorder)."""
    SYNCHRONIZED = "synchronized"   # marked S
    NOT_USED = "not_used"           # marked N: the target already has a copy as good
    ERRONEOUS = "erroneous"         # marked E: gave up after max_attempts
    FAILED = "failed"               # an attempt failed; tried again after a back-off
    SKIPPED = "skipped"             # not the call's fault (storage full, mount gone): no attempt

    @property
    def settled(self) -> bool:
        """The call left the candidate set: it carries a mark now."""
        return self in (CallOutcome.SYNCHRONIZED, CallOutcome.NOT_USED, CallOutcome.ERRONEOUS)


#: the outcome names, in the order every report lists them
OUTCOMES: tuple[str, ...] = tuple(o.value for o in CallOutcome)
#: a cycle's counts as the API, the history and ``synchrod status`` show them
COUNT_KEYS: tuple[str, ...] = ("taken", *OUTCOMES)


class SourceEvent(StrEnum):
    """What happens to a source; :class:`SourceLifecycle` turns it into a state."""
    CYCLE_STARTED = "cycle_started"
    CYCLE_SUCCEEDED = "cycle_succeeded"
    CYCLE_FAILED = "cycle_failed"
    NOT_OWNED = "not_owned"              # another daemon holds its lock
    PAUSED = "paused"                    # paused through the API, between cycles
    RESUMED = "resumed"
    DISABLED = "disabled"                # in the file (applies even during a cycle)
    DISABLED_BY_API = "disabled_by_api"  # through the API: a running cycle finishes first
    ENABLED = "enabled"


_ANY = frozenset(SourceState)
_IDLE = _ANY - {SourceState.RUNNING}
#: event -> (the states it applies in, the state it leads to); an event in
#: any other state changes nothing
TRANSITIONS: dict[SourceEvent, tuple[frozenset[SourceState], SourceState]] = {
    SourceEvent.CYCLE_STARTED: (_ANY, SourceState.RUNNING),
    # a cycle ends in waiting or down whatever happened meanwhile (a reload
    # that disabled the source takes effect at the group's next round)
    SourceEvent.CYCLE_SUCCEEDED: (_ANY, SourceState.WAITING),
    SourceEvent.CYCLE_FAILED: (_ANY, SourceState.DOWN),
    SourceEvent.NOT_OWNED: (_ANY, SourceState.STANDBY),
    SourceEvent.PAUSED: (_ANY, SourceState.PAUSED),
    SourceEvent.RESUMED: (frozenset({SourceState.PAUSED}), SourceState.WAITING),
    SourceEvent.DISABLED: (_ANY, SourceState.DISABLED),
    SourceEvent.DISABLED_BY_API: (_IDLE, SourceState.DISABLED),
    SourceEvent.ENABLED: (frozenset({SourceState.DISABLED}), SourceState.WAITING),
}


class SourceLifecycle:
    """The state of one source; :meth:`on` is the only way to change it."""

    __slots__ = ("state",)

    def __init__(self, state: SourceState = SourceState.WAITING):
        self.state = state

    def on(self, event: SourceEvent) -> SourceState:
        """Applies ``event`` (see :data:`TRANSITIONS`); returns the new state."""
        applies_in, to = TRANSITIONS[event]
        if self.state in applies_in:
            self.state = to
        return self.state
