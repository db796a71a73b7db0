"""Which calls and which of their files a source contributes (SPEC §3.1-3.2)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Protocol

from .model import MEDIA_TYPES, CFile


class FileSwitches(Protocol):
    synchronize_audio: bool
    synchronize_video: bool
    synchronize_screens_recd: bool
    synchronize_index_files: bool
    only_mixed: bool
    extra_file_types: tuple[str, ...]


def interval_start(interval: str, custom_days: int | None, now: dt.datetime) -> dt.datetime | None:
    """Earliest ``start_ts`` a source's candidates may have; None means no bound.

    ``yesterday`` reaches back to local midnight of the previous day (so
    yesterday's and today's calls), ``last_week`` 7 days, ``last_month`` 31 days,
    ``custom`` the configured number of days, ``all`` has no bound.
    """
    if interval == "all":
        return None
    if interval == "yesterday":
        # local midnight of the previous calendar day, with that day's own UTC
        # offset (a daylight-saving change in between must not shift it)
        day = now.astimezone().date() - dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time()).astimezone()
    days = {"last_week": 7, "last_month": 31}.get(interval)
    if interval == "custom":
        if custom_days is None:
            raise ValueError("custom interval needs custom_interval_days")
        days = custom_days
    if days is None:
        raise ValueError(f"unknown interval {interval!r}")
    return now - dt.timedelta(days=days)


def type_enabled(cftype: str, sw: FileSwitches, only_processed: bool) -> bool:
    """Whether this source's switches take files of ``cftype``: MAG only when not
    ``only_processed``, an unknown type only when named in ``extra_file_types``."""
    if cftype in ("AUDIO", "ARCHIVE"):
        return sw.synchronize_audio
    if cftype == "MAG":  # raw capture: only useful before processing
        return sw.synchronize_audio and not only_processed
    if cftype in ("VIDEO", "IMAGE"):
        return sw.synchronize_video
    if cftype == "RECD":
        return sw.synchronize_screens_recd
    if cftype == "INDEX":
        return sw.synchronize_index_files
    # PVMAG, PVSTREAM, PVIDEO, ...: only when named; an unknown type is never copied blindly
    return cftype in sw.extra_file_types


def taken_types(sw: FileSwitches, only_processed: bool) -> tuple[str, ...]:
    """Every file type this source takes."""
    return tuple(t for t in MEDIA_TYPES + tuple(sw.extra_file_types)
                 if type_enabled(t, sw, only_processed))


def taken_files(files: Iterable[CFile], sw: FileSwitches, only_processed: bool) -> tuple[CFile, ...]:
    """The files of one couple that this source synchronises, in id order."""
    files = sorted(files, key=lambda f: f.id)
    has_audio = any(f.cftype == "AUDIO" for f in files)
    out = []
    for f in files:
        if not type_enabled(f.cftype, sw, only_processed):
            continue
        if sw.only_mixed and not has_audio and f.cftype in ("VIDEO", "RECD"):
            continue
        out.append(f)
    return tuple(out)
