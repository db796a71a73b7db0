"""Target paths as the filesystem reports them: usage as df computes it,
and whether a file can be created there (probed for real). Blocking: never
called on the event loop."""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass

from ..core.placement import FsUsage
from .copying import FILE_MODE


@dataclass(frozen=True, slots=True)
class TargetState:
    """A target path as the media phase and the monitor see it."""
    usage: FsUsage | None
    problem: str | None   # why it takes no new files besides being full; None: open
    filesystem: str | None = None   # the mount point of the path's filesystem


#: a target path whose filesystem did not answer a bounded measurement
HUNG = TargetState(None, "did not answer (hung filesystem?)")


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
    return TargetState(usage, None if usage else "cannot read filesystem usage",
                       mount_point(path, st.st_dev))


def mount_point(path: str, dev: int) -> str:
    """The top directory of ``path`` still on device ``dev``: its filesystem's mount point."""
    path = os.path.abspath(path)
    while path != "/":
        parent = os.path.dirname(path)
        try:
            if os.stat(parent).st_dev != dev:
                break
        except OSError:
            break
        path = parent
    return path


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
    """The state of each target path, by path (each probed for real)."""
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
