"""The speech step of a cycle: the recorder's speech definitions made
identical to the replay database's, only when either side changed."""
from __future__ import annotations

import asyncpg

from ..recorder import Recorder, speech
from .engine import Engine
from .runtime import SourceRuntime


async def sync_speech_tags(engine: Engine, replay_conn: asyncpg.Connection, recorder: Recorder,
                           runtime: SourceRuntime, log) -> dict | None:
    """Makes the recorder's speech tags identical to the replay database's
    (two digest queries when nothing changed since the last time); the
    counts of rows changed, or None when nothing needed to be."""
    digests = (await speech.digest(replay_conn), await speech.digest(recorder.conn))
    if digests == runtime.speech_digests:
        return None
    master = await speech.read_definitions(replay_conn, engine.target_catalog)
    counts = await speech.make_identical(recorder, master)
    runtime.speech_digests = (digests[0], await speech.digest(recorder.conn))
    if any(counts.values()):
        log.info("speech_tags_synchronized", **counts)
    return counts
