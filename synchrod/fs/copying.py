"""How media bytes move to the target: kernel-side copies through a
temporary sibling and a rename, one ``syncfs`` per filesystem for a batch's
durability, removal. Blocking: run in a source's pool.

Errors are split by whose fault they are: :class:`~synchrod.errors.CallError`
belongs to one call and counts as an attempt; :class:`~synchrod.errors.TargetError`
is the replay storage's (full, read-only) and never marks a call.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
from collections.abc import Callable

from .. import faults
from ..core.naming import temp_name
from ..errors import CallError, TargetError

CHUNK = 8 << 20
DIR_MODE = 0o750
FILE_MODE = 0o640
_TARGET_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def target_error(exc: OSError, path: str) -> TargetError:
    """The TargetError of an OSError writing to the target: full, or not writable."""
    reason = "storage_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "target_unwritable"
    return TargetError(reason, f"{path}: {exc.strerror}")


def copy_error(exc: OSError, dest: str) -> TargetError | CallError:
    """The error of an OSError while copying to ``dest``: the target's (full,
    not writable: not the file's fault) or the file's own (``io_error``)."""
    if exc.errno in _TARGET_ERRNOS:
        return target_error(exc, dest)
    return CallError("io_error", f"copying to {dest}: {exc.strerror}")


def hash_fd(fd: int, size: int) -> str:
    """The sha256 (hex) of the first ``size`` bytes of ``fd`` (fewer when it is shorter);
    read with pread, so the file offset is untouched."""
    return _copy_hashing(fd, None, size)[1]


def copy_range(src: int, dst: int, size: int) -> int:
    """Kernel-side copy; falls back to sendfile, then to read/write."""
    copied = 0
    use = "copy_file_range"
    while copied < size:
        n = min(CHUNK, size - copied)
        try:
            if use == "copy_file_range":
                done = os.copy_file_range(src, dst, n, copied, copied)
            elif use == "sendfile":
                done = os.sendfile(dst, src, copied, n)
            else:
                buf = os.pread(src, n, copied)
                done = os.write(dst, buf) if buf else 0
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) and copied == 0 \
                    and use != "readwrite":
                use = "sendfile" if use == "copy_file_range" else "readwrite"
                continue
            raise
        if done == 0:
            break  # source shorter than it said; the size check reports it
        copied += done
        if copied == done:
            faults.point("copy_partial")
    return copied


def _copy_hashing(src: int, dst: int | None, size: int) -> tuple[int, str]:
    """Reads, hashes and (unless ``dst`` is None) writes; (bytes read, sha256)."""
    h = hashlib.sha256()
    copied = 0
    while copied < size:
        buf = os.pread(src, min(CHUNK, size - copied), copied)
        if not buf:
            break
        h.update(buf)
        view = memoryview(buf)
        while dst is not None and view:
            view = view[os.write(dst, view):]
        copied += len(buf)
        if dst is not None and copied == len(buf):
            faults.point("copy_partial")
    return copied, h.hexdigest()


def copy_to(src_fd: int, size: int, dest: str, sha256: bool,
            abandon: Callable[[str], bool] | None = None) -> str | None:
    """Copies ``size`` bytes to ``dest`` through a temporary sibling and a
    rename, so ``dest`` is either absent or complete. Durability comes from
    :func:`syncfs` of the batch. Returns the sha256 when asked for.
    ``abandon(dest)`` true before the copy starts or before its rename (its
    filesystem reached emergency): the temporary file is removed and
    TargetError ``storage_emergency`` raised (not the call's fault)."""
    directory = os.path.dirname(dest)
    _check_abandoned(abandon, dest)
    tmp = temp_name(dest)
    try:
        make_dirs(directory)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise target_error(exc, directory) from None
    digest = None
    try:
        try:
            if sha256:
                copied, digest = _copy_hashing(src_fd, out, size)
            else:
                copied = copy_range(src_fd, out, size)
            written = os.fstat(out).st_size
        except OSError as exc:
            raise copy_error(exc, dest) from None
    except BaseException:
        os.close(out)
        remove(dest, final=False)
        raise
    os.close(out)
    if copied != size or written != size:
        remove(dest, final=False)
        raise CallError("size_mismatch", f"copied {written} of {size} bytes")
    try:
        _check_abandoned(abandon, dest)
    except TargetError:
        remove(dest, final=False)
        raise
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        remove(dest, final=False)
        raise target_error(exc, dest) from None
    return digest


def _check_abandoned(abandon: Callable[[str], bool] | None, dest: str) -> None:
    if abandon is not None and abandon(dest):
        raise TargetError("storage_emergency", f"{dest}: its filesystem is at the emergency "
                                               "storage level; the copy is abandoned")


def make_dirs(directory: str) -> None:
    """Like ``os.makedirs`` but every level it creates gets ``DIR_MODE``
    (makedirs applies the mode to the last level only)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for level in reversed(missing):
        try:
            os.mkdir(level, DIR_MODE)
        except FileExistsError:
            pass


def remove(path: str, final: bool = True) -> None:
    """Removes a copy and its temporary sibling; absent files are fine (a
    path whose parent is not a directory cannot hold one either)."""
    for p in ((path, temp_name(path)) if final else (temp_name(path),)):
        try:
            os.unlink(p)
        except (FileNotFoundError, NotADirectoryError):
            pass


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def syncfs(path: str) -> None:
    """Flushes the whole filesystem holding ``path``: one call makes every
    file and rename of a batch durable (much cheaper than fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _syncfs is not None:
            if _syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise TargetError("target_unwritable", f"syncfs {path}: {os.strerror(err)}")
        else:  # pragma: no cover - every Linux libc since 2.14 has syncfs
            os.sync()
    finally:
        os.close(fd)
