"""How an archive run moves bytes (SPEC §10): a replay file read only from
where synchrod may read (the target paths and the sources' mounts, checked
on the file the kernel opened), copied kernel-side to a temporary sibling,
verified there (its size, and its bytes read back against the source's while
its sha256 is computed: one hash pass, not two) and only then renamed, its
sidecar written the same way. Durability is the caller's: one ``syncfs`` per
batch before the manifest commits. Blocking: run in a thread."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, MutableSet, Sequence
from dataclasses import dataclass

from ..core.naming import temp_name
from ..core.pathsafety import unsafe_reason
from ..errors import CallError, TargetError
from .copying import FILE_MODE, copy_error, copy_range, make_dirs, remove, target_error
from .sourcefiles import locate_within, open_located

VERIFY_CHUNK = 1 << 20   # read back in pieces: two buffers per worker, whatever the file's size


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
                 sidecar: Callable[[str], bytes], made: MutableSet[str] | None = None) -> Copied:
    """Copies ``cfpath`` to ``dest`` and writes ``dest.json`` from
    ``sidecar(sha256)``. ``made``: directories known to exist (shared by a
    run's workers, so each is checked once). CallError for the file's own
    faults (missing, unsafe, changed size, a copy that does not read back as
    its source), TargetError ``storage_full`` when the destination is full."""
    fd, size = open_replay(roots, cfpath)
    try:
        if expected_size and size != expected_size:
            raise CallError("size_mismatch", f"{cfpath} has {size} bytes, the replay "
                                             f"database says {expected_size}")
        digest = _copy_verified(fd, size, dest, made)
    finally:
        os.close(fd)
    try:
        write_bytes(dest + ".json", sidecar(digest), made)
    except TargetError:
        remove(dest)   # not archived without its sidecar: its space back to a full destination
        raise
    return Copied(size, digest)


def _copy_verified(src: int, size: int, dest: str, made: MutableSet[str] | None) -> str:
    """The copy's sha256: ``dest`` appears (renamed from its temporary
    sibling) only once its every byte read back matches the source."""
    tmp = temp_name(dest)
    out = _create(tmp, os.O_RDWR, made)
    try:
        try:
            copied = copy_range(src, out, size)
        except OSError as exc:
            raise copy_error(exc, dest) from None
        if copied != size:
            raise CallError("size_mismatch", f"copied {copied} of {size} bytes")
        digest = _read_back(out, src, size, dest)
    except BaseException:
        os.close(out)
        remove(dest, final=False)
        raise
    os.close(out)
    _rename(tmp, dest)
    return digest


def _read_back(copy: int, src: int, size: int, dest: str) -> str:
    """The sha256 of the copy as read back, which must hold the source's
    bytes, no more, no fewer (a byte-identical copy has the source's digest,
    so the source needs no hash pass of its own)."""
    h = hashlib.sha256()
    done = 0
    try:
        while done < size:
            n = min(VERIFY_CHUNK, size - done)
            data = os.pread(copy, n, done)
            if len(data) != n or data != os.pread(src, n, done):
                raise CallError("verify_failed", f"{dest} does not read back as its source")
            h.update(data)
            done += n
        if os.pread(copy, 1, size):
            raise CallError("verify_failed", f"{dest} is longer than its source")
    except OSError as exc:
        raise CallError("io_error", f"verifying {dest}: {exc.strerror}") from None
    return h.hexdigest()


def _create(path: str, access: int, made: MutableSet[str] | None) -> int:
    """A new file (mode 0640) at ``path``, its directories made (0750) unless
    ``made`` knows them; TargetError when the destination refuses it."""
    directory = os.path.dirname(path)
    flags = access | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        if made is None or directory not in made:
            make_dirs(directory)
            if made is not None:
                made.add(directory)
        try:
            return os.open(path, flags, FILE_MODE)
        except FileNotFoundError:   # removed since it was made: once more
            make_dirs(directory)
            return os.open(path, flags, FILE_MODE)
    except OSError as exc:
        raise target_error(exc, path) from None


def _rename(tmp: str, dest: str) -> None:
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        remove(dest, final=False)
        raise target_error(exc, dest) from None


def write_bytes(dest: str, data: bytes, made: MutableSet[str] | None = None) -> None:
    """``data`` to ``dest`` through a temporary sibling and a rename."""
    tmp = temp_name(dest)
    fd = _create(tmp, os.O_WRONLY, made)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        os.close(fd)
        remove(dest, final=False)
        raise target_error(exc, dest) from None
    os.close(fd)
    _rename(tmp, dest)


def clean(dest: str) -> None:
    """Removes what an interrupted copy to ``dest`` may have left: the
    temporary siblings of the media and its sidecar (a complete file is kept:
    the next run overwrites it)."""
    for path in (dest, dest + ".json"):
        remove(path, final=False)
