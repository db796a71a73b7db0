"""Where the demo lives and how it reaches things: the places under .demo/
(the embedded PostgreSQL, the recorders' mounts, the replay server's target
paths, the configuration synchrod runs with), the moment the sample calls
are dated from, and the helpers every part of the demo shares: a heading,
a query or statement on one of its databases, and `synchrod` run as a user
would.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synchrod.testing import stage  # noqa: E402
from synchrod.testing.stage import SYNCHROD, say  # noqa: E402


DEMO = REPO / ".demo"
STAGE = stage.Stage(DEMO)             # .demo/pg, and .demo/server.json to stop a server left by `--keep`
PG_ROOT = STAGE.pg_root
CONFIG = DEMO / "synchrod.yaml"
MOUNTS = {"rec1": DEMO / "mnt" / "rec1", "rec2": DEMO / "mnt" / "rec2"}
# the third recorder of the Latin-1 scene: an old SQL_ASCII installation
LATIN_REC = "rec3"
LATIN_MOUNT = DEMO / "mnt" / LATIN_REC
LATIN_DSN: dict[str, str] = {}   # its DSN once created (q() reads it as Latin-1)
TARGET_PATHS = [DEMO / "replay" / "calls", DEMO / "replay" / "calls2"]
REPLAY_DB = "replay"
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def heading(text: str) -> None:
    """Prints ``text`` as a section heading, after a blank line."""
    say()
    say(f"== {text} " + "=" * max(3, 74 - len(text)))


# --- running synchrod ---------------------------------------------------------

def synchrod(*args: str) -> int:
    """Runs ``synchrod ARGS -c CONFIG`` in the repository as a user would, printing the
    command, its output and its exit status; returns the exit status."""
    cmd = [SYNCHROD, *args, "-c", str(CONFIG)]
    say(f"$ synchrod {' '.join(args)} -c {CONFIG.relative_to(REPO)}")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        say("    " + line)
    say(f"    (exit status {proc.returncode}, {time.monotonic() - t0:.1f} s)")
    return proc.returncode


# --- the databases ---------------------------------------------------------------

def q(dsn: str, sql: str, *params):
    """The rows ``sql`` (with ``params``) returns on ``dsn``, in autocommit; the Latin-1
    recorder is read as Latin-1."""
    # a SQL_ASCII database hands its bytes over unconverted: read the Latin-1 recorder as Latin-1
    extra = {"client_encoding": "LATIN1"} if dsn == LATIN_DSN.get("dsn") else {}
    with psycopg.connect(dsn, autocommit=True, **extra) as conn:
        return conn.execute(sql, params or None).fetchall()


def execute(dsn: str, sql: str, *params) -> None:
    """Runs ``sql`` (with ``params``) on ``dsn`` in autocommit."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params or None)
