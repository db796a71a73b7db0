"""How a cycle's batch is cut into chunks for its pipeline (SPEC §3.7): while
one chunk is made durable and committed, the next one's media is copied.

The couples of one source call share a chunk: a call then appears on the
target whole, in one commit, and a crash between two chunks never leaves
half of it there.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: below this, a chunk's fixed costs (a commit, a syncfs, a mark) outweigh the overlap
PIPELINE_MIN_CHUNK = 50
#: chunks a batch is cut into at most (before keeping calls whole)
PIPELINE_CHUNKS = 4


def chunks(items: Sequence[T], call_of: Callable[[T], Hashable | None],
           pipelined: bool = True) -> list[list[T]]:
    """The batch in chunks of about ``len / PIPELINE_CHUNKS`` items, at least
    PIPELINE_MIN_CHUNK, never splitting the items of one call (``call_of``;
    None: an item of its own call). Calls are taken in the order of their first
    item in the batch, their items in batch order. Not ``pipelined`` (link
    mode moves no bytes, so nothing overlaps the database work): one chunk."""
    if not items:
        return []
    if not pipelined:
        return [list(items)]
    calls: dict[Hashable, list[T]] = {}
    for i, item in enumerate(items):
        key = call_of(item)
        calls.setdefault(("call", key) if key is not None else ("item", i), []).append(item)
    size = max(PIPELINE_MIN_CHUNK, -(-len(items) // PIPELINE_CHUNKS))
    out: list[list[T]] = []
    current: list[T] = []
    for members in calls.values():
        current.extend(members)
        if len(current) >= size:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out
