"""Delivery of storage events to the operators' subscribers (SPEC §9): each
event POSTed as JSON to every subscribed URL, with a short time-out and
retries with back-off, in order, one queue per subscriber.

Never blocking synchronisation: :meth:`Subscribers.publish` only queues; a
subscriber that cannot keep up loses its oldest events (logged), and one that
stops answering is reported once (``subscriber_down``) and again when it
answers (``subscriber_up``), while its events wait for it.
"""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import aiohttp
import structlog

log = structlog.get_logger("synchrod.storage")

POST_TIMEOUT = 5.0        # seconds a subscriber may take to answer one event
BACKOFF_FIRST = 1.0       # seconds before the first retry, doubled up to BACKOFF_MAX
BACKOFF_MAX = 60.0
QUEUE_SIZE = 1000         # events kept for a subscriber that does not answer


class _Subscriber:
    """One URL: its queue of events, the task delivering them, whether it answers."""

    def __init__(self, url: str, session: aiohttp.ClientSession,
                 on_alarm: Callable[[str, str, str], None]):
        self.url = url
        self.session = session
        self.on_alarm = on_alarm
        self.queue: collections.deque[dict] = collections.deque()
        self.ready = asyncio.Event()
        self.down = False
        self.delivered = 0
        self.dropped = 0
        self.task = asyncio.create_task(self._deliver(), name=f"subscriber {url}")

    def put(self, event: dict) -> None:
        if len(self.queue) >= QUEUE_SIZE:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("subscriber_events_dropped", url=self.url, dropped=self.dropped)
        self.queue.append(event)
        self.ready.set()

    async def _deliver(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            await self.ready.wait()
            if not self.queue:
                self.ready.clear()
                continue
            problem = await self._post(self.queue[0])
            if problem is None:
                self.queue.popleft()
                self.delivered += 1
                delay = BACKOFF_FIRST
                if self.down:
                    self.down = False
                    log.info("subscriber_up", url=self.url, waiting=len(self.queue))
                    self.on_alarm("subscriber_up", self.url, f"{self.url} receives storage events again")
                continue
            if not self.down:
                self.down = True
                log.warning("subscriber_down", url=self.url, error=problem, waiting=len(self.queue))
                self.on_alarm("subscriber_down", self.url,
                              f"{self.url} does not receive storage events: {problem}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _post(self, event: dict) -> str | None:
        """None when the subscriber took the event (any 2xx), else why not."""
        try:
            async with self.session.post(self.url, json=event,
                                         timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT)) as reply:
                if 200 <= reply.status < 300:
                    return None
                return f"HTTP {reply.status}"
        except asyncio.TimeoutError:
            return f"no answer within {POST_TIMEOUT:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"


class Subscribers:
    """Every subscribed URL of ``storage.subscribers``; :meth:`apply` follows a reload.
    ``on_alarm(kind, url, message)`` is told when one stops or starts answering."""

    def __init__(self, on_alarm: Callable[[str, str, str], None] = lambda *_: None):
        self.on_alarm = on_alarm
        self._session: aiohttp.ClientSession | None = None
        self._subs: dict[str, _Subscriber] = {}

    def apply(self, urls: tuple[str, ...]) -> None:
        """Subscribes the URLs listed and unsubscribes the others (their
        undelivered events are dropped). Needs a running event loop."""
        if urls and self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "synchrod"})
        for url in set(self._subs) - set(urls):
            self._subs.pop(url).task.cancel()
        for url in urls:
            if url not in self._subs:
                self._subs[url] = _Subscriber(url, self._session, self.on_alarm)

    def publish(self, event: dict) -> None:
        """Queues ``event`` for every subscriber; returns at once."""
        for sub in self._subs.values():
            sub.put(event)

    def views(self) -> list[dict]:
        """Each subscriber: its URL, whether it answers, events waiting, delivered, dropped."""
        return [{"url": s.url, "down": s.down, "waiting": len(s.queue), "delivered": s.delivered,
                 "dropped": s.dropped} for s in self._subs.values()]

    async def close(self) -> None:
        """Stops delivering (events not yet delivered are dropped)."""
        for sub in self._subs.values():
            sub.task.cancel()
        await asyncio.gather(*(s.task for s in self._subs.values()), return_exceptions=True)
        self._subs = {}
        if self._session is not None:
            await self._session.close()
            self._session = None
