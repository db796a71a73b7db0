"""Quality ranking of two copies of one call (SPEC §3.4).

Compared in order, first difference decides: state, problemstatus, number of
media files taken, media bytes, length. A tie keeps what the target has.
"""
from __future__ import annotations

from typing import NamedTuple

STATE_RANK = {"FINISHED": 3, "DECODED": 2, "EXT_DATA_SAVED": 1}
PARTIAL_PROBLEMS = frozenset({"ONLY_ONE_STREAM", "ONE_STREAM_INCOMPLETE", "CAPTURE_FILE_INCOMPLETE"})


class Quality(NamedTuple):
    state: int
    problem: int
    files: int
    bytes: int
    length: int


def state_rank(state: str | None) -> int:
    """FINISHED 3, DECODED 2, EXT_DATA_SAVED 1; any other state, or None, 0."""
    return STATE_RANK.get(state, 0) if state is not None else 0


def problem_rank(problemstatus: str | None) -> int:
    """NO_PROBLEM 2, a partial-stream problem 1, any other problemstatus (or None) 0."""
    if problemstatus == "NO_PROBLEM":
        return 2
    if problemstatus in PARTIAL_PROBLEMS:
        return 1
    return 0


def quality(state: str | None, problemstatus: str | None, nfiles: int, nbytes: int,
            length: int | None) -> Quality:
    """The rank of one copy of a call, in SPEC §3.4 order; a length of None counts as 0."""
    return Quality(state_rank(state), problem_rank(problemstatus), nfiles, nbytes, length or 0)


def source_is_better(source: Quality, target: Quality) -> bool:
    """True only when the source strictly wins; a tie keeps the target's copy."""
    return source > target
