"""Configuration: the YAML schema and the immutable objects built from it.

``load(path)`` returns a :class:`Config` or raises :class:`ConfigError` naming
the key path. Nothing here does I/O beyond reading the file.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from .validator import (ConfigError, Field, ListOf, Section, abs_path, boolean, choice, dsn,
                        integer, listen_address, name, number, text, text_codec, timestamp)

DEFAULT_PATH = "/etc/synchrod/synchrod.yaml"

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
    "logging": Field(Section({
        "level": Field(choice("debug", "info", "warning", "error"), "info"),
        "format": Field(choice("json", "console"), "json"),
    }), dict),
})


@dataclass(frozen=True, slots=True)
class TargetPath:
    path: str
    priority: int
    balance: float
    watermark: int


@dataclass(frozen=True, slots=True)
class SynchroConfig:
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
    sysname: str
    database: str
    audio_paths: tuple[TargetPath, ...]
    video_paths: tuple[TargetPath, ...]   # equal to audio_paths when video_paths is unset


@dataclass(frozen=True, slots=True)
class SourceConfig:
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
    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    enabled: bool
    listen: str
    jwt_secret_file: str
    token_ttl: int
    users: tuple[MonitorUser, ...]
    history_days: int

    def user(self, name: str) -> MonitorUser | None:
        return next((u for u in self.users if u.name == name), None)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str
    format: str


@dataclass(frozen=True, slots=True)
class Config:
    path: str | None
    synchro: SynchroConfig
    target: TargetConfig
    sources: tuple[SourceConfig, ...]
    monitor: MonitorConfig
    logging: LoggingConfig

    def source(self, sysname: str) -> SourceConfig:
        for src in self.sources:
            if src.sysname == sysname:
                return src
        raise KeyError(sysname)


def _paths(default_path: str, default_watermark: int, extra: list[dict]) -> tuple[TargetPath, ...]:
    paths = [TargetPath(default_path, 0, 1.0, default_watermark)]
    for p in extra:
        wm = p["watermark"] if p["watermark"] is not None else default_watermark
        paths.append(TargetPath(p["path"], p["priority"], p["balance"], wm))
    return tuple(paths)


def _target_path_keys(tgt: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, directory) of every target path, audio and video."""
    out = []
    for key, section in (("target", tgt), ("target.video_paths", tgt["video_paths"])):
        if section is None:
            continue
        out.append((f"{key}.default_path", section["default_path"]))
        out += [(f"{key}.additional_paths[{i}].path", p["path"])
                for i, p in enumerate(section["additional_paths"])]
    return out


def _containment(a: str, b: str) -> str | None:
    """How directory ``a`` relates to ``b`` (both normalised), or None."""
    if a == b:
        return "is the same directory as"
    if b.startswith(a.rstrip("/") + "/"):
        return "contains"
    if a.startswith(b.rstrip("/") + "/"):
        return "is inside"
    return None


def _check_rules(data: dict[str, Any]) -> None:
    """Cross-field rules that the per-key checkers cannot see."""
    seen = {data["target"]["sysname"]: "target.sysname"}
    target_paths = _target_path_keys(data["target"])
    for i, src in enumerate(data["sources"]):
        where = f"sources[{i}]"
        if src["sysname"] in seen:
            raise ConfigError(f"{where}.sysname",
                              f"{src['sysname']!r} is already used by {seen[src['sysname']]}")
        seen[src["sysname"]] = f"{where}.sysname"
        if src["interval"] == "custom" and src["custom_interval_days"] is None:
            raise ConfigError(f"{where}.custom_interval_days", "is required when interval is custom")
        if src["interval"] != "custom" and src["custom_interval_days"] is not None:
            raise ConfigError(f"{where}.custom_interval_days", "is only allowed when interval is custom")
        if src["mount_path"] == "/":
            raise ConfigError(f"{where}.mount_path", "must not be the root directory")
        # in link mode (copy_files: false) synchrod removes replaced files
        # from target paths only; a target path inside a mount (or a mount
        # inside a target path) would make a recorder's own media removable
        for key, tpath in target_paths:
            relation = _containment(src["mount_path"], tpath)
            if relation:
                raise ConfigError(f"{where}.mount_path",
                                  f"{src['mount_path']} {relation} {key} ({tpath}): a recorder's "
                                  "mount and a target path must not contain one another")
    tgt = data["target"]
    for key, section in (("target", tgt), ("target.video_paths", tgt["video_paths"])):
        if section is None:
            continue
        seen_paths = {section["default_path"]: f"{key}.default_path"}
        for i, p in enumerate(section["additional_paths"]):
            if p["path"] in seen_paths:
                raise ConfigError(f"{key}.additional_paths[{i}].path",
                                  f"duplicates {seen_paths[p['path']]}")
            seen_paths[p["path"]] = f"{key}.additional_paths[{i}].path"
    _check_monitor(data["monitor"])


def _check_monitor(mon: dict[str, Any]) -> None:
    names: set[str] = set()
    for i, user in enumerate(mon["users"]):
        if user["name"] in names:
            raise ConfigError(f"monitor.users[{i}].name", f"{user['name']!r} is listed twice")
        names.add(user["name"])
        if not user["password_hash"].startswith("scrypt$"):
            raise ConfigError(f"monitor.users[{i}].password_hash",
                              "must be a hash printed by `synchrod passwd`")
    # actions need a login; an open port with nobody able to log in is a mistake
    if mon["enabled"] and not mon["users"] and not is_loopback(mon["listen"]):
        raise ConfigError("monitor.listen", f"{mon['listen']} is not a loopback address: "
                                            "listening there needs monitor.users")


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_dict(raw: Any, path: str | None = None) -> Config:
    data = SCHEMA(raw, "")
    _check_rules(data)
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
    )


def resolve_path(cli_path: str | None) -> str:
    return cli_path or os.environ.get("SYNCHROD_CONFIG") or DEFAULT_PATH


def load_target_dsn(path: str) -> str:
    """Only ``target.database`` of a file that may be invalid elsewhere: what
    `status` needs to show a daemon that kept its running configuration
    (read leniently: a key given twice elsewhere must not hide the daemons)."""
    raw = _read_yaml(path, loader=yaml.SafeLoader)
    target = raw.get("target") if isinstance(raw, dict) else None
    if not isinstance(target, dict) or "database" not in target:
        raise ConfigError("target.database", "is required")
    return dsn(target["database"], "target.database")


def load(path: str) -> Config:
    return from_dict(_read_yaml(path), path)


class _DuplicateKey(Exception):
    """A key given twice in one YAML mapping (1-based lines)."""

    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


# `<<` (merge) and `=` (value) keys are flatten_mapping's to resolve
_SPECIAL_KEY_TAGS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping: PyYAML would
    silently keep the last one, and an operator's edit of the first would
    then do nothing."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._unique_checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # checked before the merge (<<) copies keys in, which an explicit key
        # may override; a node is flattened again when merged or aliased
        if id(node) not in self._unique_checked:
            self._unique_checked.add(id(node))
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag in _SPECIAL_KEY_TAGS:
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        raise _DuplicateKey(key, line, first[key])
                    first[key] = line
                except TypeError:
                    continue  # an unhashable key: construct_mapping reports it
        super().flatten_mapping(node)


def _read_yaml(path: str, loader: type = _StrictLoader) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=loader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError("", f"{path}: line {exc.line}: key {exc.key!r} is given twice "
                              f"(first at line {exc.first_line})") from None
    except FileNotFoundError:
        raise ConfigError("", f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read configuration file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
    if raw is None:
        raise ConfigError("", f"{path} is empty")
    return raw
