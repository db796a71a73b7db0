"""Which live daemon works which source (SPEC §11): rendezvous hashing with
bounded loads. Pure and deterministic: every daemon that sees the same live
daemons and sources computes the same assignment, so they agree without
talking to each other beyond what they publish.

Each source ranks the daemons that can work it by a hash of (source,
daemon); sources are placed in a fixed order, each with the best-ranked
daemon still under the bound ceil(sources / daemons) (sources fewer
daemons can work placed first). A daemon joining or
leaving moves about one share of sources, not all of them. Where daemons
do not all have the same sources enabled, a source only some can work may
go to one of them above the bound rather than to nobody.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping


def score(source: str, daemon: str) -> bytes:
    """The rank of ``daemon`` for ``source``: the same in every process and
    Python version (not ``hash()``, which is salted per process)."""
    return hashlib.blake2b(f"{source}\0{daemon}".encode(), digest_size=8).digest()


def bound(sources: int, daemons: int) -> int:
    """The most sources one daemon is given: ceil(sources / daemons)."""
    return math.ceil(sources / daemons) if daemons else 0


def assign(candidates: Mapping[str, Collection[str]]) -> dict[str, str]:
    """Source → daemon, for every source that has a candidate. ``candidates``:
    source → the live daemons that can work it (have it enabled)."""
    daemons = sorted({d for ds in candidates.values() for d in ds})
    limit = bound(sum(1 for ds in candidates.values() if ds), len(daemons))
    load = dict.fromkeys(daemons, 0)
    out: dict[str, str] = {}
    # the order sources are placed in: those fewer daemons can work first (they have less
    # choice), then by their own hash, so names alike do not crowd one daemon
    for source in sorted(candidates, key=lambda s: (len(candidates[s]), score(s, ""), s)):
        ranked = sorted(candidates[source], key=lambda d: (score(source, d), d), reverse=True)
        if not ranked:
            continue
        chosen = next((d for d in ranked if load[d] < limit), ranked[0])
        load[chosen] += 1
        out[source] = chosen
    return out


def mine(candidates: Mapping[str, Collection[str]], me: str) -> set[str]:
    """The sources the assignment gives ``me``."""
    return {s for s, d in assign(candidates).items() if d == me}
