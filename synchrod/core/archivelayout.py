"""Where an archive task puts a file and what its sidecar says (SPEC §10).

``<destination>/<task>/<YYYY-MM-DD>/<HH>/<file>`` with the date and hour of
the couple's start in the archive's time zone, ``<file>.json`` beside it.
File names are deterministic (a repeated run overwrites its own earlier,
unrecorded copy instead of leaving a twin), sanitised, unique per target
cfile (its id is in the name) and keep the media's extension.
"""
from __future__ import annotations

import datetime as dt
import json
import posixpath
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from .naming import extension, sanitise

SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".json"

#: couple columns copied into the sidecar as they are
COUPLE_FIELDS = ("couple_id", "call_id", "length", "callingnr", "originalcallednr", "finalcallednr",
                 "callingpartyname", "calledpartyname", "problemstatus", "state", "description",
                 "protected")


def file_name(sid: str, cftype: str, cfile_id: int, cfpath: str) -> str:
    """``<sid>_<cftype>_<cfile id><ext>``: the sid sanitised, the cftype lower-cased."""
    return f"{sanitise(sid)}_{sanitise(cftype.lower(), 8)}_{cfile_id}{extension(cfpath)}"


def relative_path(start_ts: dt.datetime, tz: ZoneInfo, sid: str, cftype: str, cfile_id: int,
                  cfpath: str) -> str:
    """``<YYYY-MM-DD>/<HH>/<file>`` under the task's folder, the date and hour
    of ``start_ts`` (aware) in ``tz``."""
    local = start_ts.astimezone(tz)
    return f"{local:%Y-%m-%d}/{local:%H}/{file_name(sid, cftype, cfile_id, cfpath)}"


def destination(folder: str, rel: str) -> str:
    """The media file's absolute destination in the task's ``folder``."""
    return posixpath.join(folder, rel)


def sidecar_path(media_path: str) -> str:
    """The metadata file beside a media file."""
    return media_path + SIDECAR_SUFFIX


def _iso(value: dt.datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat() if value is not None else None


def sidecar(row: Mapping[str, Any], *, task: str, run_id: int, archived_at: dt.datetime,
            sha256: str, tz: ZoneInfo) -> dict:
    """The sidecar of one archived file: the run, the couple's metadata, the
    file itself, its extdata (key → values) and voice tags. ``row``: the
    archive candidate (see ``replay.archive``); times with their offset in ``tz``."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "task": task, "run_id": run_id,
                           "archived_at": _iso(archived_at, tz), "sid": row["sid"]}
    if row.get("source") is not None:
        out["source"] = row["source"]
    out.update({k: row.get(k) for k in COUPLE_FIELDS})
    out["start_ts"], out["stop_ts"] = _iso(row["start_ts"], tz), _iso(row["stop_ts"], tz)
    out["file"] = {"cfile_id": row["cfile_id"], "cftype": row["cftype"], "cfsize": row["cfsize"],
                   "sha256": sha256, "replay_path": row["cfpath"]}
    out["extdata"] = dict(row.get("extdata") or {})
    out["voice_tags"] = list(row.get("voice_tags") or [])
    return out


def sidecar_bytes(document: dict) -> bytes:
    """The sidecar as written: UTF-8 JSON on one line (the C encoder: an
    indented document would take the pure-Python one, several times slower
    under the workers' shared GIL), keys in a stable order, a trailing newline."""
    return (json.dumps(document, ensure_ascii=False, default=str) + "\n").encode("utf-8")
