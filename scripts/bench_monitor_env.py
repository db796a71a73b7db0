"""Where the monitor benchmark lives and what it judges by: .bench/monitor/
(the embedded PostgreSQL, the configuration), the replay database's name,
Chromium's path, the group size, the 50 ms limit, the slow-statement
threshold, the moment the history is dated from, and the percentile every
figure is taken with.
"""
from __future__ import annotations

import datetime as dt
import math
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from synchrod.testing import stage  # noqa: E402


WORK = REPO / ".bench" / "monitor"
STAGE = stage.Stage(WORK)        # WORK/pg, and WORK/server.json to stop a server left by --keep
PG_ROOT = STAGE.pg_root
CONFIG = WORK / "synchrod.yaml"
REPLAY_DB = "replay"
CHROMIUM = "/usr/bin/chromium"
GROUP_SIZE = 10
LIMIT_MS = 50.0
SLOW_STATEMENT_MS = 10
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]
