"""The configuration as immutable objects: the frozen dataclasses, and
building them from the file (:func:`load`) or from plain data
(:func:`from_dict`).

``load(path)`` returns a :class:`Config` or raises one :class:`ConfigError`
listing every error, each naming its key path. Nothing here does I/O beyond
reading the file.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import yaml

from ..core.levels import Band, Mode, Thresholds
from . import archive
from .archive import ArchiveConfig, ArchiveTask
from .rules import check_rules, is_loopback
from .schema import GOVERNED_FILE_TYPES, INTERVALS, SCHEMA
from .validator import ConfigError, dsn
from .yamlfile import read_yaml

__all__ = ["DEFAULT_PATH", "ArchiveConfig", "ArchiveTask", "GOVERNED_FILE_TYPES", "INTERVALS", "SCHEMA", "Config", "ConfigError",
           "LoggingConfig", "MonitorConfig", "MonitorUser", "SourceConfig", "SynchroConfig",
           "TargetConfig", "TargetPath", "from_dict", "is_loopback", "load", "load_target_dsn",
           "resolve_path"]

DEFAULT_PATH = "/etc/synchrod/synchrod.yaml"


@dataclass(frozen=True, slots=True)
class TargetPath:
    """A directory that takes replicated media, with its share of them."""

    path: str
    priority: int
    balance: float
    watermark: int


@dataclass(frozen=True, slots=True)
class SynchroConfig:
    """The ``synchro`` section: how and how often calls are replicated."""

    enabled: bool
    sleep_period: int
    calls_per_period: int
    only_finished: bool
    only_processed: bool
    synchronize_voice_tags: bool
    synchronize_speech_tags: bool
    mark_erroneous: bool
    max_attempts: int
    backoff_base: int
    synchronize_couples_without_streams: bool
    verify: str
    start_at: dt.datetime | None
    copy_workers: int
    manage_source_index: bool
    io_timeout: int
    stop_timeout: int


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """The ``target`` section: the replay system and its target paths."""

    sysname: str
    database: str
    audio_paths: tuple[TargetPath, ...]
    video_paths: tuple[TargetPath, ...]   # equal to audio_paths when video_paths is unset

    def distinct_paths(self) -> tuple[tuple[str, TargetPath], ...]:
        """(kind, path) of every target path once, in the file's order: audio
        first, then the video paths the audio ones do not already name."""
        seen: dict[str, tuple[str, TargetPath]] = {}
        for kind, paths in (("audio", self.audio_paths), ("video", self.video_paths)):
            for p in paths:
                seen.setdefault(p.path, (kind, p))
        return tuple(seen.values())


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One item of ``sources``: a recorder and what is taken from it."""

    sysname: str
    enabled: bool
    group: str
    interval: str
    custom_interval_days: int | None
    synchronize_already_synchronized: bool
    database: str
    mount_path: str
    require_mount: bool
    copy_files: bool
    only_mixed: bool
    synchronize_audio: bool
    synchronize_video: bool
    synchronize_screens_recd: bool
    synchronize_index_files: bool
    extra_file_types: tuple[str, ...]   # cftypes taken besides those of the switches, in order
    text_encoding: str | None           # canonical codec name; None: the database's own encoding


@dataclass(frozen=True, slots=True)
class MonitorUser:
    """One item of ``monitor.users``."""

    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """The ``monitor`` section: the HTTP monitor and who may log in."""

    enabled: bool
    listen: str
    jwt_secret_file: str
    token_ttl: int
    users: tuple[MonitorUser, ...]
    history_days: int

    def user(self, name: str) -> MonitorUser | None:
        """The user called ``name``, or None."""
        return next((u for u in self.users if u.name == name), None)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """The ``storage`` section: space management on the target (SPEC §9)."""

    enabled: bool
    mode: Mode
    prune_after_days: int
    check_interval: int
    thresholds: Thresholds
    prune_metadata: bool
    max_prune_calls: int
    subscribers: tuple[str, ...]
    require_archived: str | None = None   # an archive task: only calls it archived are pruned


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """The ``logging`` section."""

    level: str
    format: str


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``path`` is the file it was read from (None: not a file)."""

    path: str | None
    synchro: SynchroConfig
    target: TargetConfig
    sources: tuple[SourceConfig, ...]
    monitor: MonitorConfig
    logging: LoggingConfig
    storage: StorageConfig
    archive: ArchiveConfig = ArchiveConfig(False, "UTC")

    def source(self, sysname: str) -> SourceConfig | None:
        """The source called ``sysname``; None if there is none."""
        return next((s for s in self.sources if s.sysname == sysname), None)

    def target_paths(self) -> tuple[str, ...]:
        """Every target path, audio and video, each once, sorted."""
        return tuple(sorted(p.path for _, p in self.target.distinct_paths()))


def _paths(default_path: str, default_watermark: int, extra: list[dict]) -> tuple[TargetPath, ...]:
    """A path section's paths, default first; a path without a watermark
    takes ``default_watermark``."""
    paths = [TargetPath(default_path, 0, 1.0, default_watermark)]
    for p in extra:
        wm = p["watermark"] if p["watermark"] is not None else default_watermark
        paths.append(TargetPath(p["path"], p["priority"], p["balance"], wm))
    return tuple(paths)



def from_dict(raw: Any, path: str | None = None) -> Config:
    """The :class:`Config` of plain data ``raw`` (as read from YAML; ``path``:
    the file it came from), or one :class:`ConfigError` listing every error:
    first each key's, in the file's order, then the cross-field rules'."""
    errors: list[ConfigError] = []
    data = SCHEMA.collect(raw, "", errors)
    errors += check_rules(data)
    if errors:
        raise ConfigError.of(errors)
    s, t, m, lg = data["synchro"], data["target"], data["monitor"], data["logging"]
    audio = _paths(t["default_path"], t["default_watermark"], t["additional_paths"])
    if t["video_paths"] is not None:
        v = t["video_paths"]
        wm = v["default_watermark"] if v["default_watermark"] is not None else t["default_watermark"]
        video = _paths(v["default_path"], wm, v["additional_paths"])
    else:
        video = audio
    return Config(
        path=path,
        synchro=SynchroConfig(**s),
        target=TargetConfig(t["sysname"], t["database"], audio, video),
        sources=tuple(SourceConfig(**{**src, "extra_file_types": tuple(src["extra_file_types"])})
                      for src in data["sources"]),
        monitor=MonitorConfig(m["enabled"], m["listen"], m["jwt_secret_file"], m["token_ttl"],
                              tuple(MonitorUser(**u) for u in m["users"]), m["history_days"]),
        logging=LoggingConfig(**lg),
        storage=_storage(data["storage"]),
        archive=archive.build(data["archive"]),
    )


def _storage(st: dict[str, Any]) -> StorageConfig:
    lv = st["levels"]
    return StorageConfig(st["enabled"], Mode(st["mode"]), st["prune_after_days"],
                         st["check_interval"],
                         Thresholds(*(Band(lv[n]["enter"], lv[n]["exit"])
                                      for n in ("warning", "critical", "emergency"))),
                         st["prune_metadata"], st["max_prune_calls"], tuple(st["subscribers"]),
                         st["require_archived"])


def resolve_path(cli_path: str | None) -> str:
    """The configuration file to read: ``-c`` if given, else
    ``$SYNCHROD_CONFIG``, else :data:`DEFAULT_PATH`."""
    return cli_path or os.environ.get("SYNCHROD_CONFIG") or DEFAULT_PATH


def load_target_dsn(path: str) -> str:
    """Only ``target.database`` of a file that may be invalid elsewhere: what
    `status` needs to show a daemon that kept its running configuration
    (read leniently: a key given twice elsewhere must not hide the daemons)."""
    raw = read_yaml(path, loader=yaml.SafeLoader)
    target = raw.get("target") if isinstance(raw, dict) else None
    if not isinstance(target, dict) or "database" not in target:
        raise ConfigError("target.database", "is required")
    return dsn(target["database"], "target.database")


def load(path: str) -> Config:
    """The :class:`Config` of the YAML file at ``path``, or one
    :class:`ConfigError`: a file that cannot be read as YAML is a single
    error, an invalid configuration lists every error (:func:`from_dict`)."""
    return from_dict(read_yaml(path), path)
