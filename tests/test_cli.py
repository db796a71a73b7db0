"""SPEC §6: the command line as an operator uses it (subprocesses, real
databases, real files): exit codes, output, and what each command changes."""
from __future__ import annotations

import json

import pytest
from _sync_helpers import (
    cli,
    define_tags,
    files_under,
    set_source,
    spec,
    speech_tags,
    target_couples,
    wav,
)

from synchrod.monitor.passwords import verify_password
from synchrod.testing.recorders import FileSpec

SYNCHROD_TABLES = {"attempts", "pending_files", "pending_unlink", "run_calls",
                   "runs", "schema_migrations", "source_state", "synced"}


def _synchrod_tables(env) -> set[str]:
    return {r[0] for r in env.target(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'synchrod'")}


def _row(stdout: str, source: str) -> list[str]:
    return next(line.split() for line in stdout.splitlines() if line.split()[:1] == [source])


# --- once -----------------------------------------------------------------------------

def test_once_exit_0_when_all_ok(env):
    env.add_calls(0, [spec("a1"), spec("a2")])
    env.add_calls(1, [spec("b1")])
    proc = env.once("--until-idle", check_rc=0)
    head = proc.stdout.splitlines()[0].split()
    assert head[:2] == ["source", "state"]
    rec1, rec2 = dict(zip(head, _row(proc.stdout, "rec1"))), dict(zip(head, _row(proc.stdout, "rec2")))
    assert (rec1["S"], rec1["failed"], rec2["S"]) == ("2", "0", "1")
    assert env.marks(0) == {"a1": "S", "a2": "S"} and env.marks(1) == {"b1": "S"}


def test_once_exit_1_when_a_call_failed(env):
    env.add_calls(0, [spec("ok"), spec("lost", [FileSpec("AUDIO", "/x/lost.wav", content="none")])])
    proc = env.once("--until-idle", check_rc=1)
    head = proc.stdout.splitlines()[0].split()
    assert dict(zip(head, _row(proc.stdout, "rec1")))["failed"] == "1"
    assert env.marks(0) == {"ok": "S", "lost": None}


@pytest.mark.parametrize("edit, key", [
    (lambda raw: raw["sources"][1].update(mount_path="relative/dir"), "sources[1].mount_path"),
    (lambda raw: raw["synchro"].update(bogus_switch=True), "synchro.bogus_switch"),
    (lambda raw: raw["sources"][0].update(interval="custom"), "sources[0].custom_interval_days"),
    (lambda raw: raw["target"].update(default_watermark=101), "target.default_watermark"),
    (lambda raw: raw["synchro"].pop("sleep_period"), "synchro.sleep_period"),
], ids=["relative_mount", "unknown_key", "custom_without_days", "watermark_range", "missing_required"])
def test_once_exit_78_on_config_error(env, edit, key):
    env.add_calls(0, [spec("untouched")])
    edit(env.raw)
    env.write_config()
    proc = env.once("--until-idle", check_rc=78)
    assert key in proc.stderr, proc.stderr
    assert env.marks(0) == {"untouched": None}
    assert _synchrod_tables(env) == set()  # nothing was even connected to


def test_dry_run_on_a_fresh_replay_database(env):
    env.add_calls(0, [spec("d1")])
    proc = cli(env, "once", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "dry run" in proc.stdout
    assert env.marks(0) == {"d1": None}


def test_dry_run_changes_nothing(env):
    assert cli(env, "init-db").returncode == 0
    define_tags(env, env.target_dsn(), {"t": ("d", [])})
    env.add_calls(0, [spec("d1"), spec("d2"), spec("gone", [FileSpec("AUDIO", "/g.wav", content="none")])])
    env.add_calls(1, [spec("d1", [wav("/d1/a.wav"), wav("/d1/b.wav")])])
    proc = env.once("--dry-run", "--until-idle", check_rc=0)
    assert "dry run" in proc.stdout
    head = proc.stdout.splitlines()[1].split()
    assert dict(zip(head, _row(proc.stdout, "rec1")))["taken"] == "3"
    assert env.marks(0) == {"d1": None, "d2": None, "gone": None}
    assert env.marks(1) == {"d1": None}
    assert env.target("SELECT count(*) FROM callrec.couples")[0][0] == 0
    assert env.target("SELECT count(*) FROM callrec.calls")[0][0] == 0
    for table in ("runs", "attempts", "synced", "pending_files"):
        assert env.target(f"SELECT count(*) FROM synchrod.{table}")[0][0] == 0, table
    assert files_under(env.tmp / "replay") == []
    assert speech_tags(env, env.source_dsn(0)) == (set(), set(), set())


def test_source_option_only_touches_that_source(env):
    define_tags(env, env.target_dsn(), {"t": ("d", [])})
    env.add_calls(0, [spec("one")])
    env.add_calls(1, [spec("two"), spec("three")])
    proc = env.once("--source", "rec2", "--until-idle", check_rc=0)
    assert [line.split()[0] for line in proc.stdout.splitlines()[1:]] == ["rec2"]
    assert env.marks(0) == {"one": None}
    assert env.marks(1) == {"two": "S", "three": "S"}
    assert set(target_couples(env)) == {"two", "three"}
    assert speech_tags(env, env.source_dsn(0)) == (set(), set(), set())
    assert speech_tags(env, env.source_dsn(1)) == ({("t", "d")}, set(), set())
    assert env.target("SELECT DISTINCT source FROM synchrod.runs") == [("rec2",)]


def test_source_option_with_an_unknown_name(env):
    env.add_calls(0, [spec("one")])
    proc = env.once("--source", "nope")
    assert proc.returncode != 0 and "nope" in proc.stderr
    assert env.marks(0) == {"one": None}


# --- same database as source and target ---------------------------------------------------

def _variants(dsn: str) -> dict[str, str]:
    base, query = dsn.split("?", 1)
    params = query.split("&")
    return {"extra_parameter": dsn + "&sslmode=disable",
            "reordered": base + "?" + "&".join(reversed(params)) + "&application_name=x"}


@pytest.mark.parametrize("variant", ["extra_parameter", "reordered"])
def test_source_naming_the_target_database_is_refused(env, variant):
    dsn = _variants(env.target_dsn())[variant]
    assert dsn != env.target_dsn()
    set_source(env, 1, database=dsn)
    env.add_calls(0, [spec("r1")])
    proc = env.once("--until-idle", check_rc=78)
    assert "rec2" in proc.stderr
    assert env.marks(0) == {"r1": None}  # refused to start: nothing synchronised
    assert env.target("SELECT count(*) FROM callrec.couples")[0][0] == 0

    chk = cli(env, "check")
    assert chk.returncode == 1
    lines = chk.stdout.splitlines()
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("source rec2 database: FAILED"), lines
    assert any(line.startswith("source rec1 database: OK") for line in lines)


def test_libpq_connect_timeout_parameter_is_accepted(env):
    set_source(env, 0, database=env.source_dsn(0) + "&connect_timeout=10")
    env.add_calls(0, [spec("ct")])
    proc = env.once("--until-idle")
    assert proc.returncode == 0, proc.stderr[-300:]
    assert env.marks(0) == {"ct": "S"}


# --- check, init-db, passwd, status ---------------------------------------------------------

def test_check_all_ok(env):
    proc = cli(env, "check")
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    # configuration, target database, target path, and per source its database and mount path
    assert len(lines) >= 7, lines
    assert all(": OK" in line and "FAILED" not in line for line in lines), lines
    for what in ("configuration", "target database", f"target path {env.target_path}",
                 "callrec schema of the target database", "callrec schema of source rec1",
                 "source rec1 database", f"source rec1 mount path {env.mounts[0]}",
                 "source rec2 database", f"source rec2 mount path {env.mounts[1]}"):
        assert sum(line.startswith(what) for line in lines) == 1, what


def test_check_reports_the_monitor_secret(env):
    secret = env.tmp / "state" / "jwt.secret"
    env.write_config(monitor={"enabled": True, "listen": "127.0.0.1:9", "jwt_secret_file": str(secret)})

    def secret_line():
        proc = cli(env, "check")
        line, = [x for x in proc.stdout.splitlines() if x.startswith("monitor JWT secret")]
        return proc.returncode, line
    rc, line = secret_line()
    assert rc == 0 and ": OK (created at the first start" in line, line
    secret.parent.mkdir()
    secret.write_text("x" * 64)
    secret.chmod(0o644)
    rc, line = secret_line()
    assert rc == 1 and "FAILED" in line and "0o644" in line, line
    secret.chmod(0o600)
    rc, line = secret_line()
    assert rc == 0 and line.endswith("OK (0 user(s), listen 127.0.0.1:9)"), line


def test_check_reports_archive_destinations(env):
    open_dir, blocker = env.tmp / "archive", env.tmp / "a-file"
    blocker.write_text("not a directory")
    env.write_config(archive={"enabled": True, "tasks": [
        {"name": "ok", "destination": str(open_dir), "schedule": "daily", "at": "02:00"},
        {"name": "bad", "destination": str(blocker / "sub"), "schedule": "hourly", "at": ":05"}]})
    proc = cli(env, "check")
    lines = [x for x in proc.stdout.splitlines() if x.startswith("archive task")]
    assert lines[0] == f"archive task ok destination {open_dir}: OK (daily 02:00)", lines
    assert lines[1] == (f"archive task bad destination {blocker / 'sub'}: FAILED "
                        f"({blocker} is not a directory)"), lines
    assert proc.returncode == 1


def test_check_fails_on_a_missing_mount_path(env):
    missing = env.tmp / "gone"
    set_source(env, 1, mount_path=str(missing))
    proc = cli(env, "check")
    assert proc.returncode == 1
    failed = [line for line in proc.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and str(missing) in failed[0] and "rec2" in failed[0], failed
    others = [line for line in proc.stdout.splitlines() if line not in failed]
    assert len(others) >= 6 and all(": OK" in line for line in others), others


def test_check_exit_78_on_config_error(env):
    env.raw["sources"][0]["mount_path"] = "nope"
    env.write_config()
    proc = cli(env, "check")
    assert proc.returncode == 78 and "sources[0].mount_path" in proc.stderr


def test_init_db_creates_the_schema_and_is_idempotent(env):
    assert _synchrod_tables(env) == set()
    first = cli(env, "init-db")
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout
    assert _synchrod_tables(env) >= SYNCHROD_TABLES
    versions = env.target("SELECT version FROM synchrod.schema_migrations ORDER BY version")
    second = cli(env, "init-db")
    assert second.returncode == 0
    assert "up to date" in second.stdout and "applied" not in second.stdout
    assert env.target("SELECT version FROM synchrod.schema_migrations ORDER BY version") == versions
    # callrec data is left alone
    assert env.target("SELECT count(*) FROM callrec.couples")[0][0] == 0


def test_passwd_prints_an_scrypt_hash(env):
    proc = cli(env, "passwd", stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("scrypt$")
    assert "correct horse" not in proc.stdout
    assert verify_password("correct horse", line)
    assert not verify_password("wrong horse", line)
    again = cli(env, "passwd", stdin="correct horse\n").stdout.strip()
    assert again != line  # salted
    assert cli(env, "passwd", stdin="\n").returncode != 0  # empty password refused


def test_status_json_lists_sources(env):
    env.add_calls(0, [spec("s1"), spec("s2"), spec("lost", [FileSpec("AUDIO", "/l.wav", content="none")])])
    before = cli(env, "status", "--json")
    assert before.returncode == 0, before.stderr
    rows = json.loads(before.stdout)["sources"]
    assert [r["sysname"] for r in rows] == ["rec1", "rec2"]
    assert all(r["last_cycle_at"] is None for r in rows)

    env.once(check_rc=1)
    after = json.loads(cli(env, "status", "--json").stdout)["sources"]
    by_name = {r["sysname"]: r for r in after}
    assert set(by_name) == {"rec1", "rec2"}
    assert by_name["rec1"]["enabled"] is True and by_name["rec1"]["group"] == "g1"
    assert by_name["rec1"]["last_cycle_at"] is not None
    assert by_name["rec1"]["last_counts"]["synchronized"] == 2
    assert by_name["rec1"]["last_counts"]["failed"] == 1
    assert by_name["rec1"]["retrying"] == 1
    assert by_name["rec2"]["retrying"] == 0
