"""Domain records shared by the core and the I/O modules."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

MEDIA_TYPES = ("AUDIO", "VIDEO", "RECD", "IMAGE", "MAG", "ARCHIVE", "INDEX")
VIDEO_TYPES = frozenset({"VIDEO", "IMAGE", "RECD"})  # stored under target video_paths


@dataclass(frozen=True, slots=True)
class CFile:
    """One media file of a couple, as the recorder describes it."""
    id: int
    cftype: str
    cfsize: int
    cfpath: str
    digest: str | None
    start_ts: dt.datetime | None
    stop_ts: dt.datetime | None


# Columns of callrec.couples copied from source to target (besides ids,
# callid, synchronized and cfcnt which synchrod manages itself).
COUPLE_COLUMNS = ("start_ts", "stop_ts", "length", "callingnr", "originalcallednr",
                  "finalcallednr", "callingpartyname", "calledpartyname", "problemstatus",
                  "description", "protected", "sid", "mixed", "state")


@dataclass(frozen=True, slots=True)
class SourceCouple:
    """A candidate couple loaded from a recorder with all it carries."""
    id: int
    callid: int | None
    start_ts: dt.datetime
    stop_ts: dt.datetime
    length: int | None
    callingnr: str | None
    originalcallednr: str | None
    finalcallednr: str | None
    callingpartyname: str | None
    calledpartyname: str | None
    problemstatus: str | None
    description: str | None
    protected: bool | None
    sid: str
    synchronized: str | None
    mixed: str | None
    state: str | None
    call_start_ts: dt.datetime | None = None
    call_stop_ts: dt.datetime | None = None
    call_length: int | None = None
    files: tuple[CFile, ...] = ()
    extdata: tuple[tuple[str, str], ...] = ()
    voice_tags: tuple[tuple[str, int], ...] = ()

    def column_values(self) -> tuple:
        return tuple(getattr(self, c) for c in COUPLE_COLUMNS)


@dataclass(frozen=True, slots=True)
class TargetCouple:
    """What the replay database holds for a sid, enough to rank and merge."""
    id: int
    callid: int | None
    sid: str
    state: str | None
    problemstatus: str | None
    length: int | None
    nfiles: int
    nbytes: int
    file_paths: tuple[str, ...] = field(default=())
