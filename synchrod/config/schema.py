"""The declarative schema of the YAML file (every key, its checker and its
default) and the checkers that only one key uses."""
from __future__ import annotations

import re
from typing import Any

from . import archive
from .validator import (
    ConfigError,
    Field,
    ListOf,
    Section,
    abs_path,
    boolean,
    choice,
    dsn,
    integer,
    listen_address,
    name,
    number,
    text,
    text_codec,
    timestamp,
)

INTERVALS = ("yesterday", "last_week", "last_month", "custom", "all")

# cftypes that a switch decides about: naming one in extra_file_types would
# take it behind that switch's back
GOVERNED_FILE_TYPES = {
    "AUDIO": "synchronize_audio", "ARCHIVE": "synchronize_audio",
    "MAG": "synchronize_audio and synchro.only_processed",
    "VIDEO": "synchronize_video", "IMAGE": "synchronize_video",
    "RECD": "synchronize_screens_recd", "INDEX": "synchronize_index_files",
}

_CFTYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,7}$")   # cfiles.cftype is VARCHAR(8)


def _extra_file_type(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _CFTYPE_RE.match(value):
        raise ConfigError(path, "must be a cftype: 1-8 upper-case letters, digits or '_' "
                                f"starting with a letter, not {value!r}")
    if value in GOVERNED_FILE_TYPES:
        raise ConfigError(path, f"{value} is governed by {GOVERNED_FILE_TYPES[value]}, "
                                "not by extra_file_types")
    return value


_target_path = Section({
    "path": Field(abs_path),
    "priority": Field(integer(-1000, 1000), 0),
    "balance": Field(number(0, lo_exclusive=True), 1.0),
    "watermark": Field(integer(1, 100), None, nullable=True),
})

_video_paths = Section({
    "default_path": Field(abs_path),
    "default_watermark": Field(integer(1, 100), None, nullable=True),
    "additional_paths": Field(ListOf(_target_path), list),
})

def _http_url(value: Any, path: str) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
        raise ConfigError(path, f"must be an http:// or https:// URL, not {value!r}")
    return value


def _band(enter: int, exit_: int) -> Field:
    """A level's percentages of use, with that level's defaults."""
    return Field(Section({"enter": Field(integer(1, 100), enter),
                          "exit": Field(integer(0, 100), exit_)}), dict)


SCHEMA = Section({
    "synchro": Field(Section({
        "enabled": Field(boolean, True),
        "sleep_period": Field(integer(1, 86400)),
        "calls_per_period": Field(integer(1, 100000), 200),
        "only_finished": Field(boolean, True),
        "only_processed": Field(boolean, True),
        "synchronize_voice_tags": Field(boolean, True),
        "synchronize_speech_tags": Field(boolean, True),
        "mark_erroneous": Field(boolean, False),
        "max_attempts": Field(integer(1, 1000), 3),
        "backoff_base": Field(integer(1, 3600), 30),
        "synchronize_couples_without_streams": Field(boolean, False),
        "verify": Field(choice("size", "sha256"), "size"),
        "start_at": Field(timestamp, None, nullable=True),
        "copy_workers": Field(integer(1, 64), 4),
        "manage_source_index": Field(boolean, True),
        # media I/O of a source that makes no progress for this long stalls
        # that source only (a hung NFS mount); it resumes when the I/O returns
        "io_timeout": Field(integer(1, 86400), 120),
        # a stop waits this long for the calls in hand, then abandons them
        "stop_timeout": Field(integer(1, 3600), 60),
    })),
    "target": Field(Section({
        "sysname": Field(name),
        "database": Field(dsn),
        "default_path": Field(abs_path),
        "default_watermark": Field(integer(1, 100), 90),
        "additional_paths": Field(ListOf(_target_path), list),
        "video_paths": Field(_video_paths, None, nullable=True),
    })),
    "sources": Field(ListOf(Section({
        "sysname": Field(name),
        "enabled": Field(boolean, True),
        "group": Field(name, "default"),
        "interval": Field(choice(*INTERVALS), "last_week"),
        "custom_interval_days": Field(integer(1, 36500), None, nullable=True),
        "synchronize_already_synchronized": Field(boolean, False),
        "database": Field(dsn),
        "mount_path": Field(abs_path),
        "require_mount": Field(boolean, False),
        "copy_files": Field(boolean, True),
        "only_mixed": Field(boolean, False),
        "synchronize_audio": Field(boolean, True),
        "synchronize_video": Field(boolean, True),
        "synchronize_screens_recd": Field(boolean, True),
        "synchronize_index_files": Field(boolean, True),
        "extra_file_types": Field(ListOf(_extra_file_type, unique=True), list),
        # SQL_ASCII recorders store bytes; this says how to read them as text
        "text_encoding": Field(text_codec, None, nullable=True),
    })), list),
    "monitor": Field(Section({
        "enabled": Field(boolean, True),
        "listen": Field(listen_address, "127.0.0.1:9218"),
        "jwt_secret_file": Field(abs_path, "/var/lib/synchrod/jwt.secret"),
        "token_ttl": Field(integer(60, 7 * 86400), 3600),
        "users": Field(ListOf(Section({
            "name": Field(name),
            "password_hash": Field(text),
        })), list),
        # cycle history (synchrod.runs) older than this is pruned
        "history_days": Field(integer(1, 3650), 30),
    }), dict),
    # space management on the target (SPEC §9)
    "storage": Field(Section({
        "enabled": Field(boolean, False),
        "mode": Field(choice("retention_priority", "recording_priority"), "retention_priority"),
        # recording_priority: media of calls older than this is pruned
        "prune_after_days": Field(integer(1, 3650), 60),
        "check_interval": Field(integer(1, 3600), 30),
        "levels": Field(Section({
            "warning": _band(75, 70),
            "critical": _band(90, 87),
            "emergency": _band(99, 97),
        }), dict),
        "prune_metadata": Field(boolean, False),   # true: pruning deletes the couples too
        "max_prune_calls": Field(integer(1, 1_000_000), 10000),   # per pruning round
        "subscribers": Field(ListOf(_http_url, unique=True), list),
        # the name of an archive task: only calls it has archived are pruned
        "require_archived": Field(text, None, nullable=True),
    }), dict),
    # archive export tasks (SPEC §10)
    "archive": archive.SECTION,
    "logging": Field(Section({
        "level": Field(choice("debug", "info", "warning", "error"), "info"),
        "format": Field(choice("json", "console"), "json"),
    }), dict),
})
