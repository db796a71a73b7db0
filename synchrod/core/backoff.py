"""Retry policy for failed calls (SPEC §3.8)."""
from __future__ import annotations

MAX_DELAY = 3600  # seconds; back-off never waits longer than an hour


def delay(attempts: int, base: int) -> int:
    """Seconds to wait after the ``attempts``-th failure (1-based): base, 2·base, 4·base … ≤ 1 h."""
    if attempts < 1:
        return 0
    return min(base * (1 << min(attempts - 1, 30)), MAX_DELAY)


def gives_up(attempts: int, max_attempts: int, mark_erroneous: bool) -> bool:
    """True when the call is to be marked ``E`` now."""
    return mark_erroneous and attempts >= max_attempts
