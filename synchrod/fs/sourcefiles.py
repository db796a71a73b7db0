"""Reading recorder files over their mount: located safely before anything
is read (no symlink, FIFO or device out of the mount), sizes and digests
checked against what the recorder says. Blocking: run in a source's pool."""
from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence

from .. import faults
from ..core.pathsafety import is_inside, join_under, unsafe_reason
from ..errors import CallError

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


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
    return locate_within((mount_real,), join_under(mount_path, cfpath), cfpath,
                         "resolves outside the mount path")


def locate_within(roots: Sequence[str], full: str, cfpath: str,
                  outside: str) -> tuple[int, os.stat_result]:
    """The ``O_PATH`` descriptor and stat of ``full`` (``cfpath`` as the row
    names it), refused (``unsafe_path``, "``cfpath`` ``outside``") unless the
    file the kernel resolved is a regular file inside one of ``roots`` (real
    paths); what :func:`locate` and the archive's reads share."""
    try:
        pfd = os.open(full, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if not any(is_inside(r, os.path.realpath(full)) for r in roots):  # a dangling link out
            raise CallError("unsafe_path", f"{cfpath!r} {outside}") from None
        raise CallError("missing_file", f"{cfpath} does not exist") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CallError("unsafe_path", f"{cfpath}: {exc.strerror}") from None
        raise CallError("io_error", f"{cfpath}: {exc.strerror}") from None
    try:
        real = os.readlink(f"/proc/self/fd/{pfd}")
        if not any(is_inside(r, real) for r in roots):
            raise CallError("unsafe_path", f"{cfpath!r} {outside}")
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
    """Raises CallError ``digest_mismatch`` when the recorder's digest is a sha256 and
    differs from ``actual``; any other recorded value (none, another hash) is not checked."""
    if recorded and _SHA256_HEX.match(recorded) and recorded.lower() != actual:
        raise CallError("digest_mismatch", f"{cfpath}: sha256 {actual}, recorder says {recorded}")


def size_of(mount_real: str, mount_path: str, cfpath: str) -> int | None:
    """Real size of a recorder file whose cfsize is unknown; None when it
    cannot be read (the media phase reports why)."""
    try:
        pfd, st = locate(mount_real, mount_path, cfpath)
    except CallError:
        return None
    os.close(pfd)
    return st.st_size


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
