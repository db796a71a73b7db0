"""Failure-injection points for the crash and fault tests.

Inert unless ``SYNCHROD_FAULT`` names a point. The tests run real ``synchrod``
processes with it set and check that the next cycle repairs whatever the
interruption left. Actions (``SYNCHROD_FAULT_ACTION``):

- ``kill`` (default): SIGKILL this process, the harshest crash there is;
- ``raise``: raise :class:`FaultInjected` (an unexpected exception);
- ``hang``: block until the file named by ``SYNCHROD_FAULT_RELEASE`` exists.

``SYNCHROD_FAULT_SKIP=N`` lets the point pass N times before it fires.
``SYNCHROD_FAULT_SOURCE=NAME`` fires it only in cycles of that source (media
points know their source from the name of the source's pool thread).

Points, in the order a cycle reaches them: ``after_load``, ``source_read``,
``copy_partial``, ``after_copy``, ``after_sync``, ``after_commit``,
``after_mark``; and, in a bulk delete job, ``deletion_batch`` (a batch
committed, its files not yet unlinked); in an archive run, ``archive_batch`` (a
page of files written, not yet durable nor recorded).
"""
from __future__ import annotations

import os
import signal
import threading
import time

POINTS = ("after_load", "source_read", "copy_partial", "after_copy", "after_sync",
          "after_commit", "after_mark")
JOB_POINTS = ("deletion_batch", "archive_batch")   # outside cycles: not in the cycle crash tests' POINTS

_lock = threading.Lock()
_passed: dict[str, int] = {}


class FaultInjected(RuntimeError):
    pass


def _current_source() -> str | None:
    thread = threading.current_thread().name   # "media-<sysname>_<n>"
    if thread.startswith("media-"):
        return thread[len("media-"):].rsplit("_", 1)[0]
    return None


def point(name: str, source: str | None = None) -> None:
    """Does nothing unless ``SYNCHROD_FAULT`` names this point (and its source matches, the
    skips are used up); then kills the process, raises FaultInjected or hangs until released."""
    if os.environ.get("SYNCHROD_FAULT") != name:
        return
    only = os.environ.get("SYNCHROD_FAULT_SOURCE")
    if only and (source or _current_source()) != only:
        return
    with _lock:
        seen = _passed.get(name, 0)
        _passed[name] = seen + 1
    if seen < int(os.environ.get("SYNCHROD_FAULT_SKIP", "0")):
        return
    action = os.environ.get("SYNCHROD_FAULT_ACTION", "kill")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: the kill lands first
    elif action == "raise":
        raise FaultInjected(f"fault injected at {name}")
    elif action == "hang":
        release = os.environ.get("SYNCHROD_FAULT_RELEASE", "")
        while not (release and os.path.exists(release)):
            time.sleep(0.05)
