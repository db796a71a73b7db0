"""How media bytes move: safe opening of recorder files, durable copies,
filesystem usage and removal. Blocking calls, run in a per-source pool.

Errors are split by whose fault they are: :class:`CallError` belongs to one
call (missing file, unsafe path, size mismatch) and counts as an attempt;
:class:`TargetError` is the replay storage's (full, read-only) and never
marks a call.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass

from . import faults
from .core.naming import temp_name
from .core.pathsafety import is_inside, join_under, unsafe_reason
from .core.placement import FsUsage

CHUNK = 8 << 20
DIR_MODE = 0o750
FILE_MODE = 0o640
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_TARGET_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class CallError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class TargetError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def _target_error(exc: OSError, path: str) -> TargetError:
    reason = "storage_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "target_unwritable"
    return TargetError(reason, f"{path}: {exc.strerror}")


# --- reading recorder files -------------------------------------------------

def locate(mount_real: str, mount_path: str, cfpath: str) -> tuple[int, os.stat_result]:
    """Finds a recorder file without reading it: an ``O_PATH`` descriptor and
    its stat. Refused unless the file the kernel actually resolved (every
    symlink followed, read back from ``/proc/self/fd``) is a regular file
    inside the real mount path; a FIFO or device would hang or never end.
    Checking the opened file, not a path looked up beforehand, leaves no
    window for a directory to be swapped for a symlink in between."""
    reason = unsafe_reason(cfpath)
    if reason:
        raise CallError("unsafe_path", f"{cfpath!r}: {reason}")
    faults.point("source_read")
    full = join_under(mount_path, cfpath)
    try:
        pfd = os.open(full, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if not is_inside(mount_real, os.path.realpath(full)):  # a dangling link out of the mount
            raise CallError("unsafe_path", f"{cfpath!r} resolves outside the mount path") from None
        raise CallError("missing_file", f"{cfpath} does not exist") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CallError("unsafe_path", f"{cfpath}: {exc.strerror}") from None
        raise CallError("io_error", f"{cfpath}: {exc.strerror}") from None
    try:
        real = os.readlink(f"/proc/self/fd/{pfd}")
        if not is_inside(mount_real, real):
            raise CallError("unsafe_path", f"{cfpath!r} resolves outside the mount path")
        st = os.fstat(pfd)
        if not stat.S_ISREG(st.st_mode):
            raise CallError("unsafe_path", f"{cfpath} is not a regular file")
    except BaseException:
        os.close(pfd)
        raise
    return pfd, st


def open_located(pfd: int, cfpath: str) -> int:
    """Opens for reading the very file an ``O_PATH`` descriptor points to."""
    try:
        return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CallError("io_error", f"{cfpath}: {exc.strerror}") from None


def open_source(mount_real: str, mount_path: str, cfpath: str) -> tuple[int, os.stat_result]:
    """A safe recorder file opened for reading (see :func:`locate`)."""
    pfd, st = locate(mount_real, mount_path, cfpath)
    try:
        return open_located(pfd, cfpath), st
    finally:
        os.close(pfd)


def check_size(cfpath: str, actual: int, expected: int) -> None:
    """The file must be as large as the recorder says (when it says)."""
    if expected and actual != expected:
        raise CallError("size_mismatch", f"{cfpath}: {actual} bytes, recorder says {expected}")


def check_digest(cfpath: str, actual: str, recorded: str | None) -> None:
    if recorded and _SHA256_HEX.match(recorded) and recorded.lower() != actual:
        raise CallError("digest_mismatch", f"{cfpath}: sha256 {actual}, recorder says {recorded}")


def hash_fd(fd: int, size: int) -> str:
    return _copy_hashing(fd, None, size)[1]


# --- writing target files -----------------------------------------------------

def _copy_range(src: int, dst: int, size: int) -> int:
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


def copy_to(src_fd: int, size: int, dest: str, sha256: bool) -> str | None:
    """Copies ``size`` bytes to ``dest`` through a temporary sibling and a
    rename, so ``dest`` is either absent or complete. Durability comes from
    :func:`syncfs` of the batch. Returns the sha256 when asked for."""
    directory = os.path.dirname(dest)
    tmp = temp_name(dest)
    try:
        make_dirs(directory)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise _target_error(exc, directory) from None
    digest = None
    try:
        try:
            if sha256:
                copied, digest = _copy_hashing(src_fd, out, size)
            else:
                copied = _copy_range(src_fd, out, size)
            written = os.fstat(out).st_size
        except OSError as exc:
            if exc.errno in _TARGET_ERRNOS:
                raise _target_error(exc, dest) from None
            raise CallError("io_error", f"copying to {dest}: {exc.strerror}") from None
    except BaseException:
        os.close(out)
        remove(dest, final=False)
        raise
    os.close(out)
    if copied != size or written != size:
        remove(dest, final=False)
        raise CallError("size_mismatch", f"copied {written} of {size} bytes")
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        remove(dest, final=False)
        raise _target_error(exc, dest) from None
    return digest


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


def size_of(mount_real: str, mount_path: str, cfpath: str) -> int | None:
    """Real size of a recorder file whose cfsize is unknown; None when it
    cannot be read (the media phase reports why)."""
    try:
        pfd, st = locate(mount_real, mount_path, cfpath)
    except CallError:
        return None
    os.close(pfd)
    return st.st_size


def remove(path: str, final: bool = True) -> None:
    """Removes a copy and its temporary sibling; absent files are fine."""
    for p in ((path, temp_name(path)) if final else (temp_name(path),)):
        try:
            os.unlink(p)
        except FileNotFoundError:
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


@dataclass(frozen=True, slots=True)
class TargetState:
    """A target path as the media phase and the monitor see it."""
    usage: FsUsage | None
    problem: str | None   # why it takes no new files besides being full; None: open


def target_state(path: str) -> TargetState:
    """Usage of a target path's filesystem, and whether a file can be created
    there (probed for real: permissions, a read-only or immutable directory,
    root included). A full filesystem is not a problem here: the watermark
    decides."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return TargetState(None, "does not exist")
    except OSError as exc:
        return TargetState(None, exc.strerror)
    if not stat.S_ISDIR(st.st_mode):
        return TargetState(None, "is not a directory")
    problem = _write_probe(path)
    if problem:
        return TargetState(None, problem)
    usage = fs_usage(path)
    return TargetState(usage, None if usage else "cannot read filesystem usage")


def _write_probe(path: str) -> str | None:
    """Creates a file in ``path`` and forgets it. An unnamed O_TMPFILE
    leaves nothing behind even if the process is killed; filesystems
    without it get a named file, removed at once."""
    try:
        os.close(os.open(path, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE))
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # full is the watermark's business
            return None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return f"not writable: {exc.strerror}"
    try:
        fd, probe = tempfile.mkstemp(prefix=".synchrod-probe-", dir=path)
    except OSError as exc:
        return None if exc.errno in (errno.ENOSPC, errno.EDQUOT) else f"not writable: {exc.strerror}"
    os.close(fd)
    os.unlink(probe)
    return None


def target_states(paths: list[str]) -> dict[str, TargetState]:
    return {p: target_state(p) for p in paths}


def fs_usage(path: str) -> FsUsage | None:
    """Usage of the filesystem holding ``path`` as df computes Use%; None if
    the path is missing or unreadable."""
    try:
        st = os.statvfs(path)
        dev = os.stat(path).st_dev
    except OSError:
        return None
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    capacity = used + st.f_bavail * st.f_frsize
    return FsUsage(dev, capacity, used)


def mount_problem(mount_path: str, require_mount: bool) -> str | None:
    """Why this source's media cannot be read now, or None when it can."""
    try:
        st = os.stat(mount_path)
    except FileNotFoundError:
        return f"mount path {mount_path} does not exist"
    except OSError as exc:
        return f"mount path {mount_path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"mount path {mount_path} is not a directory"
    if require_mount and not os.path.ismount(mount_path):
        return f"mount path {mount_path} is not a mount point"
    if not os.access(mount_path, os.R_OK | os.X_OK):
        return f"mount path {mount_path} is not readable"
    return None
