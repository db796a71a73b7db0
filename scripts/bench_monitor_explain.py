"""What PostgreSQL makes of the monitor's history reads: slow statements of
the replay database logged while measuring and read back from its log, and
the server's history statements EXPLAIN ANALYZEd as prepared statements
with a custom and with a generic plan.
"""
from __future__ import annotations

import json
import re

import psycopg

from bench_monitor_env import PG_ROOT, REPLAY_DB, SLOW_STATEMENT_MS
from synchrod.testing.pgserver import PgServer


def log_slow_statements(server: PgServer, on: bool) -> None:
    """Makes the replay database log statements slower than SLOW_STATEMENT_MS (``on``) or none,
    for the sessions opened from then on."""
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        value = f"{SLOW_STATEMENT_MS}ms" if on else "-1"
        conn.execute(f"ALTER DATABASE {REPLAY_DB} SET log_min_duration_statement = '{value}'")


# --- EXPLAIN ------------------------------------------------------------------------------------

def server_queries(hist: dict) -> list[tuple[str, str, list]]:
    """The server's own history reads (synchrod.replay.history, .reads), with
    the parameters the measured requests give them."""
    from synchrod.replay import history as h, reads
    mid, src, quiet, deep = hist["mid_id"], hist["mid_source"], hist["quiet_source"], hist["deep_id"]
    return [  # the pages in the order the measurement asks for them
        ("runs: newest page", h._RUNS, [h._NO_BEFORE, 51]),
        ("runs: before <mid>", h._RUNS, [mid, 51]),
        ("runs: before <oldest+60>", h._RUNS, [deep, 51]),
        ("runs: a source, before <mid>", h._SOURCE_RUNS, [mid, 51, src]),
        ("runs: a source, newest page", h._SOURCE_RUNS, [h._NO_BEFORE, 51, hist["first_source"]]),
        ("runs: the quiet source", h._SOURCE_RUNS, [h._NO_BEFORE, 51, quiet]),
        ("one run", h._RUN, [mid]),
        ("calls of a run, a page", h._RUN_CALLS, [mid, 0, 1001]),
        ("board: attempts per source (every 5 s)", reads._ATTEMPT_COUNTS,
         [hist["sources"]]),
    ]


def explain(server: PgServer, hist: dict) -> list[dict]:
    """EXPLAIN ANALYZE of each server statement as a prepared statement, with a
    custom plan (its first executions) and the generic plan PostgreSQL may switch
    to after five (asyncpg prepares every statement)."""
    from psycopg import sql as psql
    try:
        queries = server_queries(hist)
    except (ImportError, AttributeError) as exc:
        return [{"label": "server SQL", "error": f"not found: {exc}"}]
    out = []
    with psycopg.connect(server.dsn(REPLAY_DB), autocommit=True) as conn:
        for i, (label, text, params) in enumerate(queries):
            entry = {"label": label, "sql": " ".join(text.split())}
            try:
                conn.execute(f"PREPARE bench_q{i} AS {text}")
                args = psql.SQL("({})").format(psql.SQL(", ").join(psql.Literal(p) for p in params)) \
                    if params else psql.SQL("")
                for mode in ("custom", "generic"):
                    conn.execute(f"SET plan_cache_mode = force_{mode}_plan")
                    conn.execute(psql.SQL("EXECUTE {}{}").format(psql.Identifier(f"bench_q{i}"), args))
                    plan = conn.execute(psql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {}{}").format(
                        psql.Identifier(f"bench_q{i}"), args)).fetchone()[0]
                    root = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
                    entry[mode] = {"ms": root["Execution Time"], "plan": plan_summary(root["Plan"])}
            except Exception as exc:  # noqa: BLE001
                entry["error"] = f"{type(exc).__name__}: {exc}"[:200]
            out.append(entry)
        conn.execute("RESET plan_cache_mode")
    return out


def plan_summary(node: dict) -> str:
    """Node types with their index or table and the rows they filtered out, depth
    first: 'Limit > Index Scan Backward(runs_pkey, 9,950 removed)'."""
    parts = []

    def walk(n):
        what = n["Node Type"]
        if n.get("Scan Direction") == "Backward":
            what += " Backward"
        target = n.get("Index Name") or n.get("Relation Name")
        detail = [target] if target else []
        if n.get("Index Cond"):
            detail.append("cond " + n["Index Cond"])
        removed = n.get("Rows Removed by Filter")
        if removed:
            detail.append(f"{removed:,} rows removed by filter")
        if detail:
            what += "(" + "; ".join(detail) + ")"
        parts.append(what)
        for child in n.get("Plans", []):
            walk(child)
    walk(node)
    return " > ".join(parts)


def slow_statements(since: int) -> list[tuple[float, str]]:
    """Statements PostgreSQL logged as slower than SLOW_STATEMENT_MS since byte ``since``."""
    out = []
    log = PG_ROOT / "postgres.log"
    try:
        with open(log, errors="replace") as fh:
            fh.seek(since)
            text = fh.read()
    except OSError:
        return out
    for m in re.finditer(r"duration: ([\d.]+) ms\s+(?:statement|execute [^:]*|parse [^:]*|bind [^:]*):"
                         r"\s*(.*)", text):
        out.append((float(m.group(1)), " ".join(m.group(2).split())[:160]))
    return out
