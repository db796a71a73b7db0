"""The stage the scripts (``scripts/demo.py``, ``scripts/bench.py``,
``scripts/bench_monitor.py``) set up before they run synchrod: a work
directory with an embedded PostgreSQL in it, CallREC databases on that
server, and a synchrod configuration file for them.

    stage = Stage(REPO / ".demo")
    stage.clear()                        # a server left by a previous run stopped, the directory emptied
    server = stage.start(fast=True)      # <root>/pg; its socket noted in <root>/server.json
    dsns = callrec_databases(server, ["rec1", "rec2", "replay"])
    write_config(stage.root / "synchrod.yaml", config(
        target_dsn=dsns["replay"], target_path=..., synchro={...},
        sources=[source("rec1", dsns["rec1"], mount1), ...]))
    ...
    stage.destroy(server)

A run that keeps its server (``--keep``) leaves ``server.json`` behind: the
next :meth:`Stage.clear` stops that server and removes its socket directory
in ``/tmp``. Synchronous, for scripts and tests; never used by the daemon.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

import yaml

from . import recorders
from .pgserver import PgServer, _free_port

TEMPLATE = "callrec_tpl"
# the synchrod console script of the running interpreter's environment
SYNCHROD = str(Path(sys.executable).parent / "synchrod")


def say(text: str = "") -> None:
    """Prints ``text`` (a line) and flushes, so the output interleaves in
    order with that of the subprocesses the scripts run."""
    print(text, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a monitor to
    listen on)."""
    return _free_port()


# --- the work directory and its server ----------------------------------------------

class Stage:
    """A work directory ``root`` holding an embedded PostgreSQL (its data in
    ``root/pg``) and ``root/server.json``, which notes the running server's
    socket directory and port so that a later run can clean up after it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.pg_root = self.root / "pg"
        self.state = self.root / "server.json"

    def server_left(self) -> bool:
        """Whether a server (of an earlier run) has its pid file in ``pg_root``."""
        return (self.pg_root / "data" / "postmaster.pid").exists()

    def clear(self, mode: str = "fast", announce: Callable[[], object] | None = None) -> None:
        """Stops a server an earlier run left running in ``pg_root`` (``pg_ctl
        stop -m mode``; ``announce()`` is called first), removes the socket
        directory ``server.json`` names, then the whole work directory, and
        creates it again, empty and world-readable (0o755: when run as root the
        server runs as another user)."""
        if self.server_left():
            if announce is not None:
                announce()
            old = PgServer(self.pg_root)
            shutil.rmtree(old.socket_dir, ignore_errors=True)  # its own fresh, unused temp dir
            old.stop(mode)
        if self.state.exists():  # the old server's socket directory in /tmp
            try:
                socket_dir = json.loads(self.state.read_text()).get("socket_dir")
            except (OSError, ValueError, AttributeError):
                socket_dir = None
            if socket_dir and Path(socket_dir).name.startswith("spg-"):
                shutil.rmtree(socket_dir, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)

    def start(self, *, fast: bool) -> PgServer:
        """Starts a server with its data in ``pg_root`` (``fast``: fsync off)
        and notes its socket directory and port in ``server.json``; returns it,
        running. The work directory must exist (see :meth:`clear`)."""
        server = PgServer(self.pg_root, fast=fast).start()
        self.state.write_text(json.dumps({"socket_dir": str(server.socket_dir), "port": server.port}))
        return server

    def destroy(self, server: PgServer, *, remove_root: bool = False) -> None:
        """Stops ``server`` and deletes its data and socket directory, and
        ``server.json``; with ``remove_root`` the whole work directory too."""
        server.destroy()
        self.state.unlink(missing_ok=True)
        if remove_root:
            shutil.rmtree(self.root, ignore_errors=True)


# --- CallREC databases ----------------------------------------------------------------

def callrec_template(server: PgServer, name: str = TEMPLATE, version: str = "current",
                     encoding: str | None = None) -> str:
    """Creates database ``name`` (replacing one of that name) holding the
    CallREC schema of ``version`` (see :func:`recorders.callrec_schema`), in
    ``encoding`` if given (e.g. SQL_ASCII); returns its DSN. Also usable as a
    database of its own (a recorder with another encoding)."""
    recorders.create_template(server.dsn("postgres"), name, server.dsn, version, encoding)
    return server.dsn(name)


def clone_databases(server: PgServer, names: Iterable[str], template: str = TEMPLATE) -> dict[str, str]:
    """Creates each database of ``names`` (replacing one of that name) as a
    copy of ``template``; returns name -> DSN, in the order given."""
    admin = server.dsn("postgres")
    dsns = {}
    for name in names:
        recorders.create_database(admin, name, template)
        dsns[name] = server.dsn(name)
    return dsns


def callrec_databases(server: PgServer, names: Iterable[str], *, template: str = TEMPLATE,
                      version: str = "current", fill: Callable[[str], object] | None = None) -> dict[str, str]:
    """A CallREC template (:func:`callrec_template`; ``fill(its DSN)``, if
    given, adds what every clone should hold) and the databases ``names``
    cloned from it (recorders and replay databases alike); returns name ->
    DSN of the clones, in the order given."""
    dsn = callrec_template(server, template, version)
    if fill is not None:
        fill(dsn)
    return clone_databases(server, names, template)


# --- synchrod's configuration ------------------------------------------------------------

def source(sysname: str, database: str, mount_path: str | Path, *, group: str | None = None,
           interval: str = "all", **settings) -> dict:
    """A ``sources`` entry: ``sysname``, ``group`` (when given), ``database``,
    ``mount_path``, ``interval`` (default ``all``), then ``settings`` as
    given (``copy_files``, ``text_encoding``, ...)."""
    entry: dict = {"sysname": sysname}
    if group is not None:
        entry["group"] = group
    entry.update({"database": database, "mount_path": str(mount_path), "interval": interval})
    entry.update(settings)
    return entry


def monitor_section(listen: str, secret_file: str | Path, users: dict[str, str]) -> dict:
    """An enabled ``monitor`` section listening on ``listen`` (host:port),
    its JWT secret in ``secret_file`` (created by the daemon), and one user
    per ``users`` item (name -> password, stored as its scrypt hash)."""
    from ..monitor.passwords import hash_password
    return {"enabled": True, "listen": listen, "jwt_secret_file": str(secret_file),
            "users": [{"name": name, "password_hash": hash_password(password)}
                      for name, password in users.items()]}


def config(*, synchro: dict, target_dsn: str, target_path: str | Path, sources: list[dict],
           watermark: int = 99, additional_paths: list[dict] | None = None,
           monitor: dict | None = None, log_level: str = "warning", log_format: str = "json",
           target_sysname: str = "replay") -> dict:
    """A whole configuration, as a dict: ``synchro`` as given; the target
    ``target_sysname`` on ``target_dsn`` with ``target_path`` as its default
    path (``watermark`` percent) and ``additional_paths`` if any; the
    ``sources`` entries (see :func:`source`); ``monitor`` (default: disabled);
    logging at ``log_level`` in ``log_format``."""
    target = {"sysname": target_sysname, "database": target_dsn, "default_path": str(target_path),
              "default_watermark": watermark}
    if additional_paths:
        target["additional_paths"] = additional_paths
    return {"synchro": synchro, "target": target, "sources": sources,
            "monitor": monitor if monitor is not None else {"enabled": False},
            "logging": {"level": log_level, "format": log_format}}


def write_config(path: str | Path, raw: dict) -> Path:
    """Writes ``raw`` as YAML (keys in the order given) to ``path``; returns the path."""
    path = Path(path)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def read_config(path: str | Path) -> dict:
    """The configuration file ``path`` as a dict (to change and write back)."""
    return yaml.safe_load(Path(path).read_text())


def init_db(config_path: str | Path, *, cwd: str | Path | None = None, env: dict | None = None) -> None:
    """Runs ``synchrod init-db -c config_path`` (synchrod's schema on the
    target); raises RuntimeError with its output if it fails."""
    proc = subprocess.run([SYNCHROD, "init-db", "-c", str(config_path)], capture_output=True, text=True,
                          cwd=cwd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"synchrod init-db failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
