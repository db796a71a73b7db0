"""Progress of ``synchrod once --until-idle``: calls done out of the backlog,
MiB/s and time left. On a terminal one line redrawn in place (twice a
second); otherwise one plain line per round that took calls, so a log or a
pipe gets a readable record. Written to stderr: stdout keeps the summary."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

MiB = 1 << 20
REDRAW = 0.5   # seconds between redraws on a terminal


def eta(seconds: float | None) -> str:
    """A duration as people read it: ``42 s``, ``3 min 05 s``, ``2 h 10 min``."""
    if seconds is None:
        return "unknown"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def line(done: int, backlog: int | None, nbytes: int, elapsed: float) -> str:
    """``1,200 of 2,000 calls (60 %), 45.0 MiB/s, 18 s left``: ``backlog`` the
    calls still waiting (None while no cycle has measured it)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f"{nbytes / MiB / elapsed:.1f} MiB/s" if elapsed > 0 else "- MiB/s"
    if backlog is None:
        return f"{done:,} calls, backlog not measured yet, {speed}"
    total = done + backlog
    share = 100 * done // total if total else 100
    left = backlog / rate if rate > 0 else (0.0 if backlog == 0 else None)
    return (f"{done:,} of {total:,} calls ({share} %), {speed}, {rate:,.0f} calls/s, "
            f"{eta(left)} left")


class Progress:
    """What the rounds did so far, and how it is shown."""

    def __init__(self, stream: TextIO, live: bool,
                 clock: Callable[[], float] = time.monotonic):
        self.stream, self.live, self.clock = stream, live, clock
        self.started = clock()
        self.done = self.bytes = self.rounds = 0
        self.backlogs: dict[str, int | None] = {}
        self._round_done = 0
        self._width = 0

    def cycle(self, source: str, result, backlog: int | None) -> None:
        """One cycle ended: its calls counted, the source's backlog as it measured it."""
        self.done += result.synchronized + result.not_used + result.erroneous
        self.bytes += result.bytes
        self.backlogs[source] = backlog

    @property
    def backlog(self) -> int | None:
        """The calls still waiting on every source that measured it (None when none has)."""
        known = [b for b in self.backlogs.values() if b is not None]
        return sum(known) if known else None

    def text(self) -> str:
        """The progress line now."""
        return line(self.done, self.backlog, self.bytes, self.clock() - self.started)

    def redraw(self) -> None:
        """On a terminal: the line drawn again in place."""
        if self.live:
            text = self.text()
            self.stream.write("\r" + text.ljust(self._width))
            self.stream.flush()
            self._width = len(text)

    def round_ended(self) -> None:
        """A round ended: a plain line for it when not on a terminal (if it took calls)."""
        self.rounds += 1
        if not self.live and self.done > self._round_done:
            self.stream.write(f"round {self.rounds}: {self.text()}\n")
            self.stream.flush()
        self._round_done = self.done

    def close(self) -> None:
        """The last state, and the line left for the summary that follows."""
        if self.live:
            self.redraw()
            self.stream.write(f" in {human_elapsed(self.clock() - self.started)}\n")
            self.stream.flush()


def human_elapsed(seconds: float) -> str:
    """Elapsed time with tenths under a minute."""
    return f"{seconds:.1f} s" if seconds < 60 else eta(seconds)

