"""The records a cycle passes between its phases, from the candidates the
plan ranks to what a committed chunk leaves for marking and removal.
Pure data, no I/O: the media phase (``sync.transfer``) builds deliveries,
failures and new files; the batch writer (``replay.writes``) turns them into
outcomes and marks."""
from __future__ import annotations

from dataclasses import dataclass, field

from .model import CFile, SourceCouple
from .plan import Action
from .quality import Quality, quality
from .states import CallOutcome


@dataclass
class Candidate:
    """A candidate with the files this source takes and the planned action."""
    couple: SourceCouple
    files: tuple[CFile, ...]
    action: Action = Action.MERGE
    sizes: dict[int, int] = field(default_factory=dict)  # real sizes where cfsize is 0 (unknown)

    def quality(self) -> Quality:
        """The candidate's rank over the files taken; a cfsize of 0 counts the measured
        size in ``sizes`` (0 when unmeasured)."""
        c = self.couple
        nbytes = sum(f.cfsize or self.sizes.get(f.id, 0) for f in self.files)
        return quality(c.state, c.problemstatus, len(self.files), nbytes, c.length)


@dataclass(frozen=True, slots=True)
class NewFile:
    """A media file as the target will reference it."""
    cfile: CFile          # the recorder's description (type, times, stream group, ...)
    cfsize: int           # the real size
    cfpath: str
    digest: str | None
    copied: bool          # True: synchrod wrote it and owns it; False: linked in place


@dataclass(slots=True)
class Delivery:
    """A call ready to be written: its files durable (or linked), its quality ranked."""
    couple: SourceCouple
    quality: Quality
    planned: Action
    files: tuple[NewFile, ...] = ()


@dataclass(slots=True)
class Failure:
    """A call not written this time, and why (``reason`` is a short code)."""
    couple: SourceCouple
    reason: str
    detail: str = ""


@dataclass
class Transferred:
    """What the media phase did with a chunk of candidates."""
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)   # the calls' fault: an attempt
    skipped: list[Failure] = field(default_factory=list)    # not their fault: no attempt
    abandoned: list[str] = field(default_factory=list)      # journaled copies of failed calls
    roots: set[str] = field(default_factory=set)            # target paths to make durable


@dataclass(slots=True)
class Outcome:
    """What became of one call in a committed chunk."""
    cplid: int
    sid: str
    outcome: CallOutcome
    reason: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class Committed:
    """What committed chunks of one cycle did: marks to set, outcomes, files to remove."""
    marks: dict[int, tuple[str, str]] = field(default_factory=dict)   # couple id -> (sid, mark)
    outcomes: list[Outcome] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)   # copied, then unused: remove now
    replaced: list[str] = field(default_factory=list)   # scheduled in pending_unlink
    files: int = 0        # media files copied and now referenced
    bytes: int = 0
    run_id: int | None = None
    missing_phrases: set[str] = field(default_factory=set)  # voice tags the target cannot map

    def count(self, outcome: CallOutcome) -> int:
        """How many calls had this outcome."""
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def absorb(self, part: "Committed") -> None:
        """Adds a later chunk (or half) of the same cycle."""
        self.marks.update(part.marks)
        self.outcomes.extend(part.outcomes)
        self.orphaned.extend(part.orphaned)
        self.replaced.extend(part.replaced)
        self.files += part.files
        self.bytes += part.bytes
        self.run_id = part.run_id or self.run_id
        self.missing_phrases |= part.missing_phrases
