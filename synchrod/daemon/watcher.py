"""Watches the configuration file for edits (``watchdog``), debounced.

The directory is watched, not the file: editors and configuration tools
replace a file by writing a sibling and renaming it over (vim, sed -i,
Ansible, Kubernetes' ``..data`` symlink swap), which a watch on the old
inode would miss. Any event in the directory (or in the directory a
symlinked file points into) starts a quiet period; when it ends, the
daemon compares the file's content with the last one it saw.
"""
from __future__ import annotations

import asyncio
import hashlib
import os

import structlog
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

log = structlog.get_logger("synchrod.watcher")

DEBOUNCE_SECONDS = 0.5


def content_digest(path: str) -> str | None:
    """The file's content digest; None when it cannot be read (mid-rename)."""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def watched_dirs(path: str) -> list[str]:
    """The existing directories to watch for ``path``: its own, and the one its symlink
    resolves into when that differs."""
    dirs = [os.path.dirname(os.path.abspath(path))]
    real = os.path.dirname(os.path.realpath(path))
    if real not in dirs:
        dirs.append(real)
    return [d for d in dirs if os.path.isdir(d)]


class _Poke(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event):
        self.loop, self.event = loop, event

    def on_any_event(self, event) -> None:  # in the observer's thread
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads of the file (our own included) are not edits
        self.loop.call_soon_threadsafe(self.event.set)


class ConfigWatcher:
    def __init__(self, path: str, debounce: float = DEBOUNCE_SECONDS):
        self.path = path
        self.debounce = debounce
        self._event = asyncio.Event()
        self._observer = None

    def start(self) -> None:
        """Starts watching (from within the event loop); polls every 2 s instead when the native
        observer cannot start (e.g. the inotify instance limit)."""
        handler = _Poke(asyncio.get_running_loop(), self._event)
        try:
            self._observer = self._schedule(Observer(), handler)
        except OSError as exc:  # e.g. the inotify instance limit
            log.warning("config_watch_polling", reason=str(exc))
            self._observer = self._schedule(PollingObserver(timeout=2), handler)

    def _schedule(self, observer, handler):
        for d in watched_dirs(self.path):
            observer.schedule(handler, d, recursive=False)
        observer.start()
        return observer

    async def changes(self):
        """Yields once per burst of events, after ``debounce`` seconds of quiet."""
        while True:
            await self._event.wait()
            while self._event.is_set():
                self._event.clear()
                await asyncio.sleep(self.debounce)
            yield

    def stop(self) -> None:
        """Stops watching, waiting at most 5 s for the observer's thread; a no-op when not
        started."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
