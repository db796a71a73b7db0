"""Domain records shared by the core and the I/O modules."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple

# file types a switch governs (SPEC §3.2); any other type is taken only when
# a source names it in extra_file_types
MEDIA_TYPES = ("AUDIO", "VIDEO", "RECD", "IMAGE", "MAG", "ARCHIVE", "INDEX")
VIDEO_TYPES = frozenset({"VIDEO", "IMAGE", "RECD"})  # stored under target video_paths
# bits of couples.cftypes, where no trigger keeps it (SPEC §2)
CFTYPE_BITS = {"AUDIO": 1, "MAG": 2, "ARCHIVE": 4, "IMAGE": 8, "VIDEO": 16, "RECD": 32}


class OutOfRange(NamedTuple):
    """A value the database holds but Python cannot represent (a timestamp
    in the year 10000): loaded as this marker so only its call fails."""
    raw: int

    def __str__(self) -> str:
        return f"out-of-range value ({self.raw} µs after 2000-01-01)"


# Couple columns a delivery carries to the target where both databases have
# them (SPEC §2). Never: ids, callid, synchronized, deleted, restored,
# archived, b_method, b_location, dirty, updated_ts, scorecard_use and the
# trigger-kept cfcnt/cftypes; `protected` is merged, not copied.
COUPLE_COLUMNS = (
    "start_ts", "stop_ts", "created_ts", "length", "callingip", "calledip", "callingnr",
    "originalcallednr", "finalcallednr", "callingpartyname", "calledpartyname", "cpltype",
    "problemstatus", "description", "sid", "mixed", "state", "direction", "callingagent",
    "calledagent", "calling_domain", "called_domain", "original_domain", "dayofweek",
    "timeofday", "calling_pv_problemstatus", "called_pv_problemstatus")
# the ones every CallREC version has (the load query needs them by name)
CORE_COUPLE_COLUMNS = frozenset({"id", "callid", "start_ts", "stop_ts", "sid", "synchronized"})

# cfile columns carried besides cftype, cfsize and cfpath (which is the target's)
FILE_COLUMNS = ("start_ts", "stop_ts", "digest", "enc_key_id", "cktype", "ckvalue", "props",
                "direction")


@dataclass(frozen=True, slots=True)
class CFile:
    """One media file of a couple, as the recorder describes it."""
    id: int
    cftype: str
    cfsize: int
    cfpath: str | None
    digest: str | None = None
    start_ts: dt.datetime | None = None
    stop_ts: dt.datetime | None = None
    sgid: int | None = None
    enc_key_id: str | None = None
    cktype: str | None = None
    ckvalue: int | None = None
    props: str | None = None
    direction: str | None = None

    def column_values(self) -> tuple:
        """The file's FILE_COLUMNS values, in that order."""
        return tuple(getattr(self, c) for c in FILE_COLUMNS)


class Extdata(NamedTuple):
    key: str
    value: str
    created_ts: dt.datetime | None = None


class VoiceTag(NamedTuple):
    """A voice tag, its phrase by text (phrase ids differ between databases)."""
    phrase: str
    from_time: int
    to_time: int
    confidence: float | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class SourceCouple:
    """A candidate couple loaded from a recorder with all it carries."""
    id: int
    callid: int | None
    start_ts: dt.datetime
    stop_ts: dt.datetime
    sid: str
    length: int | None = None
    callingnr: str | None = None
    originalcallednr: str | None = None
    finalcallednr: str | None = None
    callingpartyname: str | None = None
    calledpartyname: str | None = None
    problemstatus: str | None = None
    description: str | None = None
    protected: bool | None = None
    synchronized: str | None = None
    mixed: str | None = None
    state: str | None = None
    created_ts: dt.datetime | None = None
    callingip: object = None
    calledip: object = None
    cpltype: str | None = None
    direction: str | None = None
    callingagent: str | None = None
    calledagent: str | None = None
    calling_domain: str | None = None
    called_domain: str | None = None
    original_domain: str | None = None
    dayofweek: int | None = None
    timeofday: int | None = None
    calling_pv_problemstatus: str | None = None
    called_pv_problemstatus: str | None = None
    # the source call: its own columns, and the sids of its other couples
    # (which tell the target call it belongs to, SPEC §3.5)
    call_start_ts: dt.datetime | None = None
    call_stop_ts: dt.datetime | None = None
    call_length: int | None = None
    call_cplcnt: int | None = None
    call_sids: tuple[str, ...] = ()
    files: tuple[CFile, ...] = ()
    extdata: tuple[Extdata, ...] = ()
    voice_tags: tuple[VoiceTag, ...] = ()

    def column_values(self, columns=COUPLE_COLUMNS) -> tuple:
        """The couple's values of ``columns`` (COUPLE_COLUMNS by default), in that order."""
        return tuple(getattr(self, c) for c in columns)


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
    protected: bool = False
    deleted: bool = False    # pruned (deleted = 'D'): the media is gone on purpose
