"""The cross-field rules of the configuration: what the per-key checkers of
the schema cannot see (a name used twice, a recorder's mount containing a
target path, a monitor that nobody can log in to).

The rules read the schema's partial result, where a value that failed its
own check is :data:`~.validator.INVALID`: a rule that depends on such a value
is skipped (its error is already listed), every other violation is reported.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterator

from . import archive
from .validator import INVALID, ConfigError


def _mapping(value: Any) -> bool:
    """Whether ``value`` is a section that passed its own check."""
    return isinstance(value, dict)


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, item) of every valid mapping of a list that passed its check."""
    if isinstance(value, list):
        yield from ((i, item) for i, item in enumerate(value) if _mapping(item))


def _path_sections(tgt: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, section) of the target's audio paths and of its video paths if set."""
    yield "target", tgt
    if _mapping(tgt["video_paths"]):
        yield "target.video_paths", tgt["video_paths"]


def _section_paths(key: str, section: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, directory) of a path section's valid paths, default first."""
    out = []
    if section["default_path"] is not INVALID:
        out.append((f"{key}.default_path", section["default_path"]))
    out += [(f"{key}.additional_paths[{i}].path", p["path"])
            for i, p in _items(section["additional_paths"]) if p["path"] is not INVALID]
    return out


def _target_path_keys(tgt: Any) -> list[tuple[str, str]]:
    """(key path, directory) of every valid target path, audio and video."""
    if not _mapping(tgt):
        return []
    return [kp for key, section in _path_sections(tgt) for kp in _section_paths(key, section)]


def _containment(a: str, b: str) -> str | None:
    """How directory ``a`` relates to ``b`` (both normalised), or None."""
    if a == b:
        return "is the same directory as"
    if b.startswith(a.rstrip("/") + "/"):
        return "contains"
    if a.startswith(b.rstrip("/") + "/"):
        return "is inside"
    return None


def check_rules(data: Any) -> list[ConfigError]:
    """Every violation of a cross-field rule in the schema's result ``data``,
    in order: each source's (its sysname unique, custom_interval_days with
    interval custom only, its mount neither the root nor containing or
    inside a target path), then the target paths listed twice, then the
    monitor's. Empty when there is none."""
    if not _mapping(data):
        return []
    errors: list[ConfigError] = []
    tgt = data["target"]
    seen: dict[str, str] = {}
    if _mapping(tgt) and tgt["sysname"] is not INVALID:
        seen[tgt["sysname"]] = "target.sysname"
    target_paths = _target_path_keys(tgt)
    for i, src in _items(data["sources"]):
        errors += _check_source(f"sources[{i}]", src, seen, target_paths)
    if _mapping(tgt):
        for key, section in _path_sections(tgt):
            errors += _check_paths_unique(key, section)
    if _mapping(data["monitor"]):
        errors += check_monitor(data["monitor"])
    if _mapping(data["storage"]) and _mapping(data["storage"]["levels"]):
        errors += check_levels(data["storage"]["levels"])
    errors += archive.check(data, target_paths)
    return errors


def check_levels(levels: dict[str, Any]) -> list[ConfigError]:
    """Each level entered above where it is left, and warning < critical <
    emergency for both percentages."""
    errors = []
    bands = {name: band for name, band in levels.items()
             if _mapping(band) and INVALID not in band.values()}
    for name, band in bands.items():
        if band["enter"] <= band["exit"]:
            errors.append(ConfigError(f"storage.levels.{name}.exit",
                                      f"must be below enter ({band['enter']}), not {band['exit']}"))
    order = [n for n in ("warning", "critical", "emergency") if n in bands]
    for low, high in zip(order, order[1:]):
        for key in ("enter", "exit"):
            if bands[low][key] >= bands[high][key]:
                errors.append(ConfigError(f"storage.levels.{high}.{key}",
                                          f"must be above {low}'s ({bands[low][key]}), "
                                          f"not {bands[high][key]}"))
    return errors


def _check_source(where: str, src: dict[str, Any], seen: dict[str, str],
                  target_paths: list[tuple[str, str]]) -> list[ConfigError]:
    """The violations of one source's rules; records its sysname in ``seen``."""
    errors = []
    sysname = src["sysname"]
    if sysname is not INVALID:
        if sysname in seen:
            errors.append(ConfigError(f"{where}.sysname", f"{sysname!r} is already used by {seen[sysname]}"))
        else:
            seen[sysname] = f"{where}.sysname"
    interval, days = src["interval"], src["custom_interval_days"]
    if interval is not INVALID and days is not INVALID:
        if interval == "custom" and days is None:
            errors.append(ConfigError(f"{where}.custom_interval_days", "is required when interval is custom"))
        if interval != "custom" and days is not None:
            errors.append(ConfigError(f"{where}.custom_interval_days",
                                      "is only allowed when interval is custom"))
    mount = src["mount_path"]
    if mount is INVALID:
        return errors
    if mount == "/":
        errors.append(ConfigError(f"{where}.mount_path", "must not be the root directory"))
        return errors
    # in link mode (copy_files: false) synchrod removes replaced files
    # from target paths only; a target path inside a mount (or a mount
    # inside a target path) would make a recorder's own media removable
    for key, tpath in target_paths:
        relation = _containment(mount, tpath)
        if relation:
            errors.append(ConfigError(f"{where}.mount_path",
                                      f"{mount} {relation} {key} ({tpath}): a recorder's mount "
                                      "and a target path must not contain one another"))
    return errors


def _check_paths_unique(key: str, section: dict[str, Any]) -> list[ConfigError]:
    """An error for each path of a path section that repeats an earlier one."""
    errors = []
    seen: dict[str, str] = {}
    for path_key, directory in _section_paths(key, section):
        if directory in seen:
            errors.append(ConfigError(path_key, f"duplicates {seen[directory]}"))
        else:
            seen[directory] = path_key
    return errors


def check_monitor(mon: dict[str, Any]) -> list[ConfigError]:
    """Every violation of the monitor's rules: a user listed twice, a
    password_hash not made by `synchrod passwd`, and an enabled monitor
    listening beyond loopback with no user able to log in."""
    errors = []
    names: set[str] = set()
    for i, user in _items(mon["users"]):
        if user["name"] is not INVALID:
            if user["name"] in names:
                errors.append(ConfigError(f"monitor.users[{i}].name", f"{user['name']!r} is listed twice"))
            names.add(user["name"])
        if user["password_hash"] is not INVALID and not user["password_hash"].startswith("scrypt$"):
            errors.append(ConfigError(f"monitor.users[{i}].password_hash",
                                      "must be a hash printed by `synchrod passwd`"))
    # actions need a login; an open port with nobody able to log in is a mistake
    if (mon["enabled"] is True and mon["users"] == [] and mon["listen"] is not INVALID
            and not is_loopback(mon["listen"])):
        errors.append(ConfigError("monitor.listen", f"{mon['listen']} is not a loopback address: "
                                                    "listening there needs monitor.users"))
    return errors


def is_loopback(listen: str) -> bool:
    """Whether the HOST of a HOST:PORT address is ``localhost`` or a loopback IP."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
