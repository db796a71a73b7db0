"""Lexical safety of recorder file paths (SPEC §3.3).

A ``cfpath`` comes from a recorder database and is untrusted. It must be an
absolute, normalised path: no ``..``, no empty or ``.`` segment, no NUL, no
trailing slash. The filesystem part of the check (symlinks resolving outside
the mount, non-regular files) lives in ``synchrod.media``.
"""
from __future__ import annotations

MAX_PATH = 4096


def unsafe_reason(cfpath: object) -> str | None:
    """None when ``cfpath`` is lexically safe, else a short reason."""
    if not isinstance(cfpath, str) or not cfpath:
        return "empty path"
    if len(cfpath) > MAX_PATH:
        return "path too long"
    if "\x00" in cfpath:
        return "NUL byte in path"
    if not cfpath.startswith("/"):
        return "path is not absolute"
    if cfpath == "/":
        return "path is the root directory"
    for segment in cfpath[1:].split("/"):
        if segment == "":
            return "empty path segment"
        if segment == ".":
            return "'.' path segment"
        if segment == "..":
            return "'..' path segment"
    return None


def join_under(mount_path: str, cfpath: str) -> str:
    """``mount_path + cfpath`` for a cfpath already known to be safe."""
    return mount_path.rstrip("/") + cfpath


def is_inside(root: str, path: str) -> bool:
    """True when ``path`` is ``root`` or below it (both already resolved)."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"
