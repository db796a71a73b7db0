"""Small helpers shared by the cycle and CLI integration tests (real
databases, real files: they only read and write what the `env` fixture
of conftest.py provides)."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NOW

from synchrod.testing.recorders import CallSpec, FileSpec


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- configuration ------------------------------------------------------------

def set_synchro(env, **kw) -> None:
    env.raw["synchro"].update(kw)
    env.write_config()


def set_target(env, **kw) -> None:
    env.raw["target"].update(kw)
    env.write_config()


def set_source(env, i: int, **kw) -> None:
    env.raw["sources"][i].update(kw)
    env.write_config()


# --- building calls -------------------------------------------------------------

def spec(sid: str, files: list[FileSpec] | None = None, minutes_ago: int = 60, **kw) -> CallSpec:
    """A CallSpec with exactly the given files (default: one 1 s WAV)."""
    if files is None:
        files = [FileSpec("AUDIO", f"/calls/{sid}/0.wav", seconds=1)]
    return CallSpec(sid=sid, start=NOW - dt.timedelta(minutes=minutes_ago), files=files, **kw)


def wav(path: str, seconds: float = 1, **kw) -> FileSpec:
    return FileSpec("AUDIO", path, seconds=seconds, **kw)


def blob(cftype: str, path: str, size: int = 2048, **kw) -> FileSpec:
    return FileSpec(cftype, path, size=size, content="bytes", **kw)


# --- reading the replay database --------------------------------------------------

def target_couples(env) -> dict[str, dict]:
    cols = ("id", "callid", "sid", "state", "problemstatus", "length", "cfcnt", "callingnr",
            "description", "mixed", "synchronized")
    rows = env.target(f"SELECT {', '.join(cols)} FROM callrec.couples ORDER BY sid")
    return {r[2]: dict(zip(cols, r)) for r in rows}


def target_files(env, sid: str | None = None) -> list[tuple[str, str, int, str | None]]:
    """(cftype, cfpath, cfsize, digest) of the target files, of one sid or all."""
    sql = ("SELECT f.cftype, f.cfpath, f.cfsize, f.digest FROM callrec.cfiles f"
           " JOIN callrec.couples c ON c.id = f.cplid")
    if sid is None:
        return env.target(sql + " ORDER BY f.cfpath")
    return env.target(sql + " WHERE c.sid = %s ORDER BY f.cftype, f.cfpath", sid)


def target_cftypes(env, sid: str) -> list[str]:
    return sorted(t for t, *_ in target_files(env, sid))


def extdata(env, sid: str) -> set[tuple[str, str]]:
    return set(env.target("SELECT e.key, e.value FROM callrec.couple_extdata e"
                          " JOIN callrec.couples c ON c.id = e.cplid WHERE c.sid = %s", sid))


def voice_tags(env, sid: str) -> set[tuple[str, int]]:
    """(phrase text, from ms) of the target couple's voice tags."""
    return set(env.target("SELECT p.phrase_text, v.from_time FROM callrec.voice_tags v"
                          " JOIN callrec.speech_phrases p ON p.phraseid = v.phraseid"
                          " JOIN callrec.couples c ON c.id = v.cplid WHERE c.sid = %s", sid))


def define_phrases(env, dsn: str, *phrases: str) -> None:
    """Speech phrases (no tag) in one database, e.g. the master for voice tags."""
    for text in phrases:
        env.query(dsn, "INSERT INTO callrec.speech_phrases (phrase_text, state, enabled)"
                       " VALUES (%s, 'READY', true) ON CONFLICT DO NOTHING", text)


def define_tags(env, dsn: str, tags: dict[str, tuple[str | None, list[str]]]) -> None:
    """Speech tags in one database: name -> (icon, its phrases)."""
    for name, (icon, phrases) in tags.items():
        define_phrases(env, dsn, *phrases)
        env.query(dsn, "INSERT INTO callrec.speech_tags (tag_name, state, icon) VALUES (%s, 'READY', %s)",
                  name, icon)
        for text in phrases:
            env.query(dsn, "INSERT INTO callrec.tag_to_phrases (tagid, phraseid)"
                           " SELECT t.tagid, p.phraseid FROM callrec.speech_tags t, callrec.speech_phrases p"
                           " WHERE t.tag_name = %s AND p.phrase_text = %s", name, text)


def outcomes(env, source: str = "rec1") -> dict[str, list[tuple[str, str | None]]]:
    """sid -> [(outcome, reason), ...] over every recorded run of ``source``, oldest first."""
    rows = env.target("SELECT rc.sid, rc.outcome, rc.reason FROM synchrod.run_calls rc"
                      " JOIN synchrod.runs r ON r.id = rc.run_id WHERE r.source = %s"
                      " ORDER BY r.id, rc.sid", source)
    out: dict[str, list] = {}
    for sid, outcome, reason in rows:
        out.setdefault(sid, []).append((outcome, reason))
    return out


def attempts(env, source: str = "rec1") -> dict[str, tuple[int, str]]:
    return {sid: (n, reason) for sid, n, reason in env.target(
        "SELECT sid, attempts, last_reason FROM synchrod.attempts WHERE source = %s", source)}


def expire_backoff(env) -> None:
    """Ends every back-off now (as if its delay had passed)."""
    env.target("UPDATE synchrod.attempts SET next_try_at = now() - interval '1 second'")


def files_under(root: str | Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


# --- command line ------------------------------------------------------------------

def cli(env, *args: str, stdin: str | None = None, timeout: float = 120):
    """``synchrod ARGS`` as a subprocess, with the test's configuration
    appended as ``-c`` unless the command is passwd."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    argv = [sys.executable, "-m", "synchrod", *args]
    if args and args[0] != "passwd":
        argv += ["-c", str(env.config_path)]
    full_env = dict(os.environ)
    full_env.pop("SYNCHROD_FAULT", None)
    full_env.pop("SYNCHROD_CONFIG", None)
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=REPO, input=stdin)


def speech_tags(env, dsn: str) -> tuple[set, set, set]:
    """(tags as (name, icon), phrases as (text, enabled), links as (tag name, phrase text))."""
    tags = set(env.query(dsn, "SELECT tag_name, icon FROM callrec.speech_tags"))
    phrases = set(env.query(dsn, "SELECT phrase_text, enabled FROM callrec.speech_phrases"))
    links = set(env.query(dsn, "SELECT t.tag_name, p.phrase_text FROM callrec.tag_to_phrases l"
                               " JOIN callrec.speech_tags t ON t.tagid = l.tagid"
                               " JOIN callrec.speech_phrases p ON p.phraseid = l.phraseid"))
    return tags, phrases, links


def teach_cftype(env, cftype: str, bit: int, dsns: list[str] | None = None) -> None:
    """Makes the test's databases (or those of ``dsns``) installations that
    know ``cftype``: their cftype CHECK and GET_CFTYPEMASK, as installations
    with INDEX files are."""
    for dsn in dsns or [env.target_dsn()] + [env.source_dsn(i) for i in range(len(env.source_dbs))]:
        (check,), = env.query(dsn, "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                                   " WHERE conname = '_cfiles_cftype_ck'")
        if f"'{cftype}'" not in check:
            env.query(dsn, "ALTER TABLE callrec.cfiles DROP CONSTRAINT _cfiles_cftype_ck")
            env.query(dsn, "ALTER TABLE callrec.cfiles ADD CONSTRAINT _cfiles_cftype_ck "
                      + check.replace("ARRAY[", f"ARRAY['{cftype}'::character varying, ", 1))
        env.query(dsn, f"""
            CREATE OR REPLACE FUNCTION callrec.get_cftypemask(varchar) RETURNS bit(32)
                LANGUAGE plpgsql IMMUTABLE RETURNS NULL ON NULL INPUT AS $$
            BEGIN
                CASE upper($1)
                    WHEN 'AUDIO' THEN RETURN CAST(1 AS bit(32)); WHEN 'MAG' THEN RETURN CAST(2 AS bit(32));
                    WHEN 'ARCHIVE' THEN RETURN CAST(4 AS bit(32)); WHEN 'IMAGE' THEN RETURN CAST(8 AS bit(32));
                    WHEN 'VIDEO' THEN RETURN CAST(16 AS bit(32)); WHEN 'RECD' THEN RETURN CAST(32 AS bit(32));
                    WHEN '{cftype}' THEN RETURN CAST({bit} AS bit(32));
                    ELSE RAISE EXCEPTION 'unknown value in GET_CFTYPEMASK(VARCHAR)';
                END CASE;
            END $$""")


def retone(env, i: int, cfpath: str, freq: float) -> None:
    """Rewrites a recorder WAV with another tone: same size, other bytes (tells
    apart two copies that the quality rules treat as equal)."""
    import wave

    from synchrod.testing.recorders import write_wav
    path = str(env.mounts[i]) + cfpath
    with wave.open(path, "rb") as w:
        seconds = w.getnframes() / w.getframerate()
    size = Path(path).stat().st_size
    write_wav(path, seconds, freq)
    assert Path(path).stat().st_size == size


def source_sha(env, i: int, cfpath: str) -> str:
    return sha256(str(env.mounts[i]) + cfpath)


def target_shas(env, sid: str | None = None) -> list[str]:
    return sorted(sha256(p) for _, p, _, _ in target_files(env, sid))


def run_bounded(env, max_rounds: int = 20, only: str | None = None):
    """``once --until-idle`` in this process, but giving up after ``max_rounds``
    rounds (so a loop that never goes idle fails the test instead of hanging it)."""
    import asyncio

    from synchrod.sync.engine import Engine
    from synchrod.sync.rounds import run_once

    async def go():
        engine = Engine(env.config)
        await engine.open()
        await engine.verify_sources()
        try:
            return await run_once(engine, only, True, False, max_rounds=max_rounds)
        finally:
            await engine.close()
    totals = asyncio.run(go())
    assert all(t.cycles < max_rounds for t in totals.values()), totals
    return totals


@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    """A real filesystem of ``size`` (``8m``) mounted at ``where`` for the
    test (a full disk needs one); skips the test where mounting needs root."""
    where.mkdir(exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
