"""Shared fixtures: one real PostgreSQL per test run, a fresh set of
databases per test cloned from a template, real directories for mounts and
target paths, and helpers to run synchrod in-process or as a subprocess."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import yaml

from synchrod.config import from_dict
from synchrod.testing import recorders
from synchrod.testing.pgserver import PgServer

TEMPLATE = "synchrod_test_tpl"                 # the current CallREC schema
TEMPLATE_LEGACY = "synchrod_test_tpl_legacy"   # an older CallREC version
TEMPLATE_SQL_ASCII = "synchrod_test_tpl_ascii"  # the current schema in a SQL_ASCII database
TEMPLATES = {TEMPLATE: ("current", None), TEMPLATE_LEGACY: ("legacy", None),
             TEMPLATE_SQL_ASCII: ("current", "SQL_ASCII")}
REPO = Path(__file__).resolve().parent.parent
SYNCHROD = [sys.executable, "-m", "synchrod"]


class Cluster:
    """Where test databases live: the embedded server or SYNCHROD_TEST_DSN."""

    def __init__(self, admin_dsn: str, server: PgServer | None):
        self.admin_dsn = admin_dsn
        self.server = server

    def dsn(self, dbname: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def cluster():
    external = os.environ.get("SYNCHROD_TEST_DSN")
    server = None
    if external:
        c = Cluster(external, None)
    else:
        root = Path(tempfile.mkdtemp(prefix="synchrod-pg-"))
        os.chmod(root, 0o755)
        server = PgServer(root / "pg").start()
        c = Cluster(server.dsn("postgres"), server)
    for name, (version, encoding) in TEMPLATES.items():
        recorders.create_template(c.admin_dsn, name, c.dsn, version, encoding)
    yield c
    for name in TEMPLATES:
        recorders.drop_database(c.admin_dsn, name)
    if server is not None:
        server.destroy()


class Env:
    """One test's world: a replay database, recorders, mounts, target paths."""

    def __init__(self, cluster: Cluster, tmp: Path, nsources: int = 2,
                 templates: dict[str, str] | None = None):
        """``templates``: database ("replay", "rec1", ...) -> template to
        clone instead of the current CallREC schema."""
        self.cluster = cluster
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        self.target_db = f"t_{tag}_replay"
        self.source_dbs = [f"t_{tag}_rec{i + 1}" for i in range(nsources)]
        templates = templates or {}
        for role, db in [("replay", self.target_db)] + [(f"rec{i + 1}", d) for i, d in
                                                        enumerate(self.source_dbs)]:
            recorders.create_database(cluster.admin_dsn, db, templates.get(role, TEMPLATE))
        self.mounts = [tmp / f"mnt{i + 1}" for i in range(nsources)]
        for m in self.mounts:
            m.mkdir()
        self.target_path = tmp / "replay" / "calls"
        self.target_path.mkdir(parents=True)
        self.config_path = tmp / "synchrod.yaml"
        self.raw = {
            "synchro": {"sleep_period": 1, "calls_per_period": 50, "only_finished": True,
                        "only_processed": True, "max_attempts": 3, "mark_erroneous": False,
                        "backoff_base": 1},
            "target": {"sysname": "replay", "database": cluster.dsn(self.target_db),
                       "default_path": str(self.target_path), "default_watermark": 100},
            "sources": [{"sysname": f"rec{i + 1}", "group": f"g{i + 1}",
                         "database": cluster.dsn(db), "mount_path": str(m), "interval": "all"}
                        for i, (db, m) in enumerate(zip(self.source_dbs, self.mounts))],
            "monitor": {"enabled": False},
            "logging": {"level": "warning", "format": "json"},
        }
        self.write_config()

    # --- configuration ---------------------------------------------------------
    def write_config(self, **sections) -> Path:
        for key, value in sections.items():
            self.raw[key] = value
        self.config_path.write_text(yaml.safe_dump(self.raw, sort_keys=False))
        return self.config_path

    def source_cfg(self, i: int) -> dict:
        return self.raw["sources"][i]

    @property
    def config(self):
        return from_dict(yaml.safe_load(self.config_path.read_text()), str(self.config_path))

    # --- databases -----------------------------------------------------------------
    def target_dsn(self) -> str:
        return self.cluster.dsn(self.target_db)

    def source_dsn(self, i: int = 0) -> str:
        return self.cluster.dsn(self.source_dbs[i])

    def query(self, dsn: str, sql: str, *params) -> list[tuple]:
        """Rows of a statement; text of a SQL_ASCII database (bytes to psycopg)
        comes back as str, undecodable bytes as surrogates."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            rows = cur.fetchall() if cur.description else []
        return [tuple(v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v for v in r)
                for r in rows]

    def target(self, sql: str, *params) -> list[tuple]:
        return self.query(self.target_dsn(), sql, *params)

    def source(self, i: int, sql: str, *params) -> list[tuple]:
        return self.query(self.source_dsn(i), sql, *params)

    def marks(self, i: int = 0) -> dict[str, str | None]:
        return dict(self.source(i, "SELECT sid, synchronized FROM callrec.couples"))

    def add_calls(self, i: int, calls, client_encoding: str | None = None) -> dict[str, int]:
        return recorders.add_calls(self.source_dsn(i), self.mounts[i], calls, client_encoding)

    # --- running synchrod --------------------------------------------------------------
    def once(self, *args: str, env: dict | None = None, timeout: float = 120,
             check_rc: int | None = None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        full_env.pop("SYNCHROD_FAULT", None)
        full_env.update(env or {})
        proc = subprocess.run(SYNCHROD + ["once", "-c", str(self.config_path), *args],
                              capture_output=True, text=True, env=full_env, timeout=timeout,
                              cwd=REPO)
        if check_rc is not None:
            assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def run_inprocess(self, until_idle: bool = True, only: str | None = None):
        """One `once` inside this process (faster than a subprocess)."""
        from synchrod.sync.engine import Engine
        from synchrod.sync.rounds import run_once

        async def go():
            engine = Engine(self.config)
            await engine.open()
            await engine.verify_sources()
            try:
                return await run_once(engine, only, until_idle, False)
            finally:
                await engine.close()
        return asyncio.run(go())

    def target_files(self) -> list[Path]:
        return sorted(p for p in self.target_path.rglob("*") if p.is_file())

    def cleanup(self) -> None:
        for db in [self.target_db] + self.source_dbs:
            recorders.drop_database(self.cluster.admin_dsn, db)


@pytest.fixture
def env(cluster, tmp_path):
    e = Env(cluster, tmp_path)
    yield e
    e.cleanup()


@pytest.fixture
def make_env(cluster, tmp_path):
    """``make_env(templates={...}, nsources=2)``: an Env whose databases
    are cloned from the given templates (TEMPLATE_LEGACY, TEMPLATE_SQL_ASCII)."""
    made = []

    def make(**kw):
        e = Env(cluster, tmp_path / f"env{len(made)}", **kw)
        made.append(e)
        return e
    yield make
    for e in made:
        e.cleanup()


NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def call(sid: str, minutes_ago: int = 60, files: int = 1, **kw) -> recorders.CallSpec:
    """A finished, processed call with ``files`` real WAV files."""
    start = NOW - dt.timedelta(minutes=minutes_ago)
    specs = kw.pop("file_specs", None)
    if specs is None:
        specs = [recorders.FileSpec("AUDIO", f"/calls/{sid}/{n}.wav", seconds=1 + n)
                 for n in range(files)]
    return recorders.CallSpec(sid=sid, start=start, files=specs, **kw)


@pytest.fixture
def make_call():
    return call


def pytest_collection_modifyitems(config, items):
    # the slow fault/chaos tests run last so quick failures show first
    items.sort(key=lambda item: 1 if item.get_closest_marker("slow") else 0)


