"""Quality ranking (SPEC §3.4) and the per-call plan (SPEC §3.5).

The expected order is written here independently of synchrod.core.quality:
state FINISHED > DECODED > EXT_DATA_SAVED > NULL; problemstatus NO_PROBLEM >
{ONLY_ONE_STREAM, ONE_STREAM_INCOMPLETE, CAPTURE_FILE_INCOMPLETE} > anything
else; then more files, more bytes, longer length; a tie keeps the target.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchrod.core.model import TargetCouple
from synchrod.core.plan import Action, decide, mark_for, target_quality
from synchrod.core.quality import Quality, problem_rank, quality, source_is_better, state_rank

STATES_BEST_FIRST = ["FINISHED", "DECODED", "EXT_DATA_SAVED", None]
PARTIAL = ["ONLY_ONE_STREAM", "ONE_STREAM_INCOMPLETE", "CAPTURE_FILE_INCOMPLETE"]
OTHER_PROBLEMS = ["NO_AUDIO", "BROKEN", "", "no_problem", None]


def spec_key(state, problem, nfiles, nbytes, length):
    """The SPEC's lexicographic key, built without the module under test."""
    s = len(STATES_BEST_FIRST) - STATES_BEST_FIRST.index(state)
    p = 3 if problem == "NO_PROBLEM" else 2 if problem in PARTIAL else 1
    return (s, p, nfiles, nbytes, length or 0)


couples = st.tuples(
    st.sampled_from(STATES_BEST_FIRST),
    st.sampled_from(["NO_PROBLEM"] + PARTIAL + OTHER_PROBLEMS),
    st.integers(0, 5),
    st.integers(0, 10**6) | st.sampled_from([0, 1, 2]),
    st.none() | st.integers(0, 5000) | st.sampled_from([0, 1]),
)


# --- ranks -------------------------------------------------------------------

def test_state_rank_order():
    ranks = [state_rank(s) for s in STATES_BEST_FIRST]
    assert ranks == sorted(ranks, reverse=True)
    assert len(set(ranks)) == 4
    assert state_rank(None) == 0


def test_unknown_state_ranks_like_null():
    assert state_rank("SOMETHING_ELSE") == state_rank(None)
    assert state_rank("finished") == state_rank(None)  # case matters: the column is upper case


@pytest.mark.parametrize("partial", PARTIAL)
def test_problem_rank_partials_are_equal_and_between(partial):
    assert problem_rank("NO_PROBLEM") > problem_rank(partial) > problem_rank("OTHER")
    assert problem_rank(partial) == problem_rank(PARTIAL[0])


@pytest.mark.parametrize("other", OTHER_PROBLEMS)
def test_problem_rank_any_other_value_is_lowest(other):
    assert problem_rank(other) == problem_rank("UNKNOWN_PROBLEM") < problem_rank(PARTIAL[0])


def test_quality_tuple_fields_and_null_length():
    q = quality("DECODED", "ONLY_ONE_STREAM", 3, 1234, None)
    assert q == Quality(state=2, problem=1, files=3, bytes=1234, length=0)
    assert quality("FINISHED", "NO_PROBLEM", 1, 10, 60) == Quality(3, 2, 1, 10, 60)


# --- each comparison level (first difference decides) ---------------------------

def better(a, b):
    return source_is_better(quality(*a), quality(*b))


def test_state_decides_first():
    # the worse state wins everything else and still loses
    assert better(("FINISHED", "OTHER", 0, 0, 0), ("DECODED", "NO_PROBLEM", 9, 10**9, 9999))
    assert better(("DECODED", None, 0, 0, None), ("EXT_DATA_SAVED", "NO_PROBLEM", 9, 9, 9))
    assert better(("EXT_DATA_SAVED", None, 0, 0, None), (None, "NO_PROBLEM", 9, 9, 9))
    assert not better((None, "NO_PROBLEM", 9, 9, 9), ("EXT_DATA_SAVED", None, 0, 0, None))


def test_problemstatus_decides_second():
    assert better(("FINISHED", "NO_PROBLEM", 1, 1, 1), ("FINISHED", "ONLY_ONE_STREAM", 5, 500, 50))
    assert better(("FINISHED", "CAPTURE_FILE_INCOMPLETE", 1, 1, 1), ("FINISHED", "WEIRD", 5, 500, 50))
    assert not better(("FINISHED", "WEIRD", 5, 500, 50), ("FINISHED", "ONE_STREAM_INCOMPLETE", 1, 1, 1))


def test_partial_problems_tie_and_fall_through_to_files():
    assert better(("FINISHED", "ONLY_ONE_STREAM", 2, 1, 1), ("FINISHED", "CAPTURE_FILE_INCOMPLETE", 1, 9, 9))
    assert not better(("FINISHED", "ONLY_ONE_STREAM", 1, 9, 9), ("FINISHED", "CAPTURE_FILE_INCOMPLETE", 1, 9, 9))


def test_files_decide_third():
    assert better(("FINISHED", "NO_PROBLEM", 2, 10, 10), ("FINISHED", "NO_PROBLEM", 1, 10**9, 9999))
    assert not better(("FINISHED", "NO_PROBLEM", 1, 10**9, 9999), ("FINISHED", "NO_PROBLEM", 2, 10, 10))


def test_bytes_decide_fourth():
    assert better(("FINISHED", "NO_PROBLEM", 2, 1001, 10), ("FINISHED", "NO_PROBLEM", 2, 1000, 9999))
    assert not better(("FINISHED", "NO_PROBLEM", 2, 1000, 9999), ("FINISHED", "NO_PROBLEM", 2, 1001, 10))


def test_length_decides_last_and_null_is_zero():
    assert better(("FINISHED", "NO_PROBLEM", 2, 1000, 61), ("FINISHED", "NO_PROBLEM", 2, 1000, 60))
    assert better(("FINISHED", "NO_PROBLEM", 2, 1000, 1), ("FINISHED", "NO_PROBLEM", 2, 1000, None))
    assert not better(("FINISHED", "NO_PROBLEM", 2, 1000, 0), ("FINISHED", "NO_PROBLEM", 2, 1000, None))


def test_tie_keeps_target():
    q = quality("FINISHED", "NO_PROBLEM", 2, 1000, 60)
    assert not source_is_better(q, q)
    assert not source_is_better(quality("X", "A", 0, 0, None), quality(None, "B", 0, 0, 0))


# --- properties -------------------------------------------------------------------

@given(couples, couples)
def test_order_matches_spec_lexicographic_rule(a, b):
    assert source_is_better(quality(*a), quality(*b)) == (spec_key(*a) > spec_key(*b))


@given(couples, couples)
def test_order_is_total_and_antisymmetric(a, b):
    qa, qb = quality(*a), quality(*b)
    outcomes = [source_is_better(qa, qb), source_is_better(qb, qa), qa == qb]
    assert outcomes.count(True) == 1
    assert (qa == qb) == (spec_key(*a) == spec_key(*b))


@given(couples, couples, couples)
def test_order_is_transitive(a, b, c):
    qa, qb, qc = quality(*a), quality(*b), quality(*c)
    if source_is_better(qa, qb) and source_is_better(qb, qc):
        assert source_is_better(qa, qc)


@given(st.lists(couples, min_size=1, max_size=8))
def test_best_of_many_agrees_with_spec(items):
    best_code = max(items, key=lambda c: quality(*c))
    best_spec = max(items, key=lambda c: spec_key(*c))
    assert spec_key(*best_code) == spec_key(*best_spec)


# --- plan ---------------------------------------------------------------------------

def tc(state="FINISHED", problem="NO_PROBLEM", nfiles=2, nbytes=1000, length=60):
    return TargetCouple(id=7, callid=3, sid="sid-1", state=state, problemstatus=problem,
                        length=length, nfiles=nfiles, nbytes=nbytes)


def test_target_quality_uses_target_columns():
    assert target_quality(tc("DECODED", "ONLY_ONE_STREAM", 3, 99, None)) == Quality(2, 1, 3, 99, 0)


def test_decide_insert_when_target_has_no_couple():
    assert decide(quality(None, "BROKEN", 0, 0, None), None) is Action.INSERT


def test_decide_replace_when_source_strictly_better():
    assert decide(quality("FINISHED", "NO_PROBLEM", 3, 1000, 60), tc()) is Action.REPLACE
    assert decide(quality("FINISHED", "NO_PROBLEM", 2, 1000, 61), tc()) is Action.REPLACE
    assert decide(quality("FINISHED", "NO_PROBLEM", 0, 0, 0), tc(state="DECODED")) is Action.REPLACE


def test_decide_merge_on_tie_or_worse():
    assert decide(quality("FINISHED", "NO_PROBLEM", 2, 1000, 60), tc()) is Action.MERGE
    assert decide(quality("FINISHED", "NO_PROBLEM", 2, 999, 6000), tc()) is Action.MERGE
    assert decide(quality("DECODED", "NO_PROBLEM", 9, 10**9, 6000), tc()) is Action.MERGE


@given(couples, couples)
def test_decide_agrees_with_spec(src, tgt):
    state, problem, nfiles, nbytes, length = tgt
    action = decide(quality(*src), tc(state, problem, nfiles, nbytes, length))
    expected = Action.REPLACE if spec_key(*src) > spec_key(*tgt) else Action.MERGE
    assert action is expected


@pytest.mark.parametrize("action,recorded,mark", [
    (Action.INSERT, None, "S"), (Action.INSERT, "N", "S"), (Action.INSERT, "E", "S"),
    (Action.REPLACE, None, "S"), (Action.REPLACE, "N", "S"), (Action.REPLACE, "E", "S"),
    (Action.MERGE, None, "N"), (Action.MERGE, "E", "N"), (Action.MERGE, "F", "N"),
    (Action.MERGE, "S", "S"),  # a retry after a crash before the mark keeps S
    (Action.MERGE, "N", "N"),
])
def test_mark_for(action, recorded, mark):
    assert mark_for(action, recorded) == mark


@given(st.sampled_from(list(Action)), st.sampled_from([None, "S", "N", "E", "F"]))
def test_mark_is_never_e_or_f(action, recorded):
    assert mark_for(action, recorded) in ("S", "N")


def test_decide_never_copies_back_a_call_pruned_on_purpose():
    best = quality("FINISHED", "NO_PROBLEM", 9, 10 ** 9, 600)
    pruned = TargetCouple(id=7, callid=3, sid="sid-1", state="FINISHED", problemstatus="NO_PROBLEM",
                          length=60, nfiles=0, nbytes=0, deleted=True)
    assert decide(best, pruned) is Action.MERGE          # metadata only, mark N
    assert decide(best, None, tombstoned=True) is Action.MERGE   # its couple deleted: mark N
    assert decide(best, None) is Action.INSERT
    assert mark_for(Action.MERGE, None) == "N"
