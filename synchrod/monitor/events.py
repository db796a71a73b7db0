"""Server-Sent Events: a hub that fans events out to every open stream."""
from __future__ import annotations

import asyncio
import itertools
import json

from aiohttp import web

KEEPALIVE = 15.0      # seconds between comment lines on a quiet stream
QUEUE_SIZE = 1000     # events a slow client may lag behind before it is dropped


def encode(event_id: int, event: str, data) -> bytes:
    """One SSE message: ``id``, ``event`` and compact JSON ``data`` lines, then a blank line."""
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {event}\ndata: {body}\n\n".encode()


class Hub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue] = set()
        self._ids = itertools.count(1)
        self.closed = False

    @property
    def listeners(self) -> int:
        """How many streams are open now."""
        return len(self._queues)

    def publish(self, event: str, data) -> None:
        """Queues the event for every open stream; never blocks: a stream QUEUE_SIZE events
        behind is ended instead."""
        if not self._queues:
            return
        message = encode(next(self._ids), event, data)
        for q in list(self._queues):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:  # a client that stopped reading: its stream ends
                self._queues.discard(q)
                _replace_with_end(q)

    def close(self) -> None:
        """Ends every stream (the daemon is stopping)."""
        self.closed = True
        for q in list(self._queues):
            _replace_with_end(q)
        self._queues.clear()

    async def stream(self, request: web.Request, first: tuple[str, object]) -> web.StreamResponse:
        """Streams to one client: ``first`` at once, then every event published, a keepalive comment
        after KEEPALIVE s of quiet; until the client goes or the hub closes."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(q)
        try:
            await resp.write(b"retry: 2000\n" + encode(next(self._ids), *first))
            while not self.closed:
                try:
                    message = await asyncio.wait_for(q.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    message = b": keepalive\n\n"
                if message is None:
                    break
                await resp.write(message)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._queues.discard(q)
        return resp


def _replace_with_end(q: asyncio.Queue) -> None:
    while not q.empty():
        q.get_nowait()
    q.put_nowait(None)
