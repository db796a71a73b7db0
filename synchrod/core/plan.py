"""What to do with one candidate call against what the target holds (SPEC §3.5)."""
from __future__ import annotations

import enum

from .model import TargetCouple
from .quality import Quality, quality, source_is_better


class Action(enum.Enum):
    INSERT = "insert"    # no target couple with this sid: copy media, insert rows, mark S
    REPLACE = "replace"  # target copy is worse: replace media and columns, union metadata, mark S
    MERGE = "merge"      # target copy is equal or better, or protected: union metadata only, mark N


def target_quality(t: TargetCouple) -> Quality:
    """The target couple's rank, comparable with a source candidate's."""
    return quality(t.state, t.problemstatus, t.nfiles, t.nbytes, t.length)


def decide(source: Quality, target: TargetCouple | None, tombstoned: bool = False) -> Action:
    """A protected target couple is never replaced: its media stays, the
    metadata is unioned (SPEC §3.5; CallREC's triggers forbid deleting its
    files anyway). A call pruned or deleted on the target on purpose is never
    copied back (SPEC §9): a pruned couple (``deleted``) gets the metadata, a
    tombstoned sid without a couple nothing; both are marked N."""
    if target is None:
        return Action.MERGE if tombstoned else Action.INSERT
    if target.deleted:
        return Action.MERGE
    if not target.protected and source_is_better(source, target_quality(target)):
        return Action.REPLACE
    return Action.MERGE


def mark_for(action: Action, recorded: str | None) -> str:
    """The source mark. A call this source already delivered keeps the mark it
    was given (a crash between target commit and source mark must not turn an
    ``S`` into an ``N`` on the retry)."""
    if action is Action.MERGE:
        return recorded if recorded in ("S", "N") else "N"
    return "S"
