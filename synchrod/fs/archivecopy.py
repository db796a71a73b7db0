"""How an archive run moves bytes (SPEC §10): a replay file read only from
where synchrod may read (the target paths and the sources' mounts, checked
on the file the kernel opened), copied through a temporary sibling and a
rename, verified (size and sha256 of the copy read back), its sidecar
written the same way. Durability is the caller's: one ``syncfs`` per batch
before the manifest commits. Blocking: run in a thread."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.naming import temp_name
from ..core.pathsafety import unsafe_reason
from ..errors import CallError
from .copying import FILE_MODE, copy_to, hash_fd, make_dirs, remove, target_error
from .sourcefiles import locate_within, open_located


@dataclass(frozen=True, slots=True)
class Copied:
    """A media file and its sidecar, written and verified (not yet durable)."""
    size: int
    sha256: str


def open_replay(roots: Sequence[str], cfpath: str) -> tuple[int, int]:
    """(descriptor, size) of a replay file; CallError ``unsafe_path`` unless
    the file actually opened (symlinks followed) is a regular file inside one
    of ``roots`` (real paths), ``missing_file`` when it is gone (as
    :func:`sourcefiles.locate` checks recorder files)."""
    reason = unsafe_reason(cfpath)
    if reason:
        raise CallError("unsafe_path", f"{cfpath!r}: {reason}")
    pfd, st = locate_within(roots, cfpath, cfpath,
                            "is outside the target paths and the sources' mounts")
    try:
        return open_located(pfd, cfpath), st.st_size
    finally:
        os.close(pfd)


def archive_file(roots: Sequence[str], cfpath: str, dest: str, expected_size: int,
                 sidecar: Callable[[str], bytes]) -> Copied:
    """Copies ``cfpath`` to ``dest`` (kernel-side) and writes ``dest.json`` from
    ``sidecar(sha256)``; the copy is verified: its size and its sha256, read
    back, against the source's. CallError for the file's own faults (missing,
    unsafe, changed size, a copy that does not read back the same),
    TargetError ``storage_full`` when the destination is full."""
    fd, size = open_replay(roots, cfpath)
    try:
        if expected_size and size != expected_size:
            raise CallError("size_mismatch", f"{cfpath} has {size} bytes, the replay "
                                             f"database says {expected_size}")
        digest = hash_fd(fd, size)
        copy_to(fd, size, dest, sha256=False)
    finally:
        os.close(fd)
    _verify(dest, size, digest)
    write_bytes(dest + ".json", sidecar(digest))
    return Copied(size, digest)


def _verify(dest: str, size: int, digest: str) -> None:
    """The copy read back has the size and the sha256 of the source."""
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CallError("io_error", f"{dest}: {exc.strerror}") from None
    try:
        written = os.fstat(fd).st_size
        if written != size or hash_fd(fd, size) != digest:
            raise CallError("verify_failed", f"{dest} does not read back as its source")
    finally:
        os.close(fd)


def write_bytes(dest: str, data: bytes) -> None:
    """``data`` to ``dest`` through a temporary sibling and a rename."""
    tmp = temp_name(dest)
    try:
        make_dirs(os.path.dirname(dest))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise target_error(exc, dest) from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        os.close(fd)
        remove(dest, final=False)
        raise target_error(exc, dest) from None
    os.close(fd)
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        remove(dest, final=False)
        raise target_error(exc, dest) from None


def clean(dest: str) -> None:
    """Removes what an interrupted copy to ``dest`` may have left: the
    temporary siblings of the media and its sidecar (a complete file is kept:
    the next run overwrites it)."""
    for path in (dest, dest + ".json"):
        remove(path, final=False)

