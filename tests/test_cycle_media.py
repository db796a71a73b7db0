"""SPEC §3.3 (path safety), §3.6 (media copies and links), §3.9 and §5
(target paths: watermark, priority, balance, video paths), on real files."""
from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from _sync_helpers import (attempts, blob, files_under, outcomes, set_source, set_synchro,
                           set_target, sha256, source_sha, spec, target_couples, target_files,
                           target_shas, teach_cftype, wav)
from invariants import assert_consistent
from synchrod.core.naming import TMP_PREFIX
from synchrod.testing.recorders import CallSpec, FileSpec, write_wav

WAV_1S = 44 + 2 * 8000  # bytes of a 1 s, 8 kHz, 16-bit mono WAV


# --- §3.3 path safety ---------------------------------------------------------------

def _unsafe_calls(env) -> dict[str, FileSpec]:
    """One call per kind of unsafe path; each file exists so only safety can refuse it."""
    mount = env.mounts[0]
    (mount / "calls/u").mkdir(parents=True)
    outside = env.tmp / "outside"
    size = write_wav(outside / "secret.wav", 1)
    (mount / "calls/u/escape.wav").symlink_to(outside / "secret.wav")
    (mount / "calls/u/escape_dir").symlink_to(outside)
    os.mkfifo(mount / "calls/u/pipe.wav")
    (mount / "calls/u/dir.wav").mkdir()
    write_wav(mount / "calls/u/plain.wav", 1)
    write_wav(mount / "rel.wav", 1)
    none = dict(content="none", size=size)
    return {
        "dotdot": FileSpec("AUDIO", "/calls/u/../u/plain.wav", **none),
        "relative": FileSpec("AUDIO", "rel.wav", **none),
        "empty_segment": FileSpec("AUDIO", "/calls//u/plain.wav", **none),
        "dot_segment": FileSpec("AUDIO", "/calls/./u/plain.wav", **none),
        "symlink_escape": FileSpec("AUDIO", "/calls/u/escape.wav", **none),
        "symlinked_dir_escape": FileSpec("AUDIO", "/calls/u/escape_dir/secret.wav", **none),
        "fifo": FileSpec("AUDIO", "/calls/u/pipe.wav", **none),
        "directory": FileSpec("AUDIO", "/calls/u/dir.wav", **none),
    }


def test_unsafe_paths_fail_the_call_and_nothing_is_copied(env):
    # a recorder whose IS_LOCALABSPATH lets such paths in (its body is not
    # public; synchrod must not rely on it)
    env.source(0, "ALTER DOMAIN callrec.localabspath DROP CONSTRAINT dom_localabspath")
    bad = _unsafe_calls(env)
    calls = [spec("good-before", minutes_ago=90)]
    for kind, f in bad.items():
        # a safe first file: the whole call is refused, this one is not copied either
        calls.append(spec(f"bad-{kind}", [wav(f"/calls/{kind}/first.wav"), f], minutes_ago=60))
    calls.append(spec("good-after", minutes_ago=30))
    env.add_calls(0, calls)
    # a subprocess with a time-out: a FIFO read would hang forever
    proc = env.once("--until-idle", timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr

    marks = env.marks(0)
    assert (marks["good-before"], marks["good-after"]) == ("S", "S")
    results = outcomes(env)
    for kind in bad:
        sid = f"bad-{kind}"
        assert marks[sid] is None, kind
        assert results[sid] == [("failed", "unsafe_path")], kind
        assert attempts(env)[sid] == (1, "unsafe_path"), kind
    assert set(target_couples(env)) == {"good-before", "good-after"}
    # only the two good calls' media, nothing of the refused ones, no leftovers
    on_disk = env.target_files()
    assert sorted(sha256(p) for p in on_disk) == sorted(
        [source_sha(env, 0, "/calls/good-before/0.wav"), source_sha(env, 0, "/calls/good-after/0.wav")])
    assert not [p for p in files_under(env.tmp / "replay") if p.name.startswith(TMP_PREFIX)]
    assert env.target("SELECT count(*) FROM synchrod.pending_files")[0][0] == 0
    # the file outside the mount is untouched
    assert (env.tmp / "outside/secret.wav").stat().st_size == WAV_1S


def test_symlink_staying_inside_the_mount_is_followed(env):
    mount = env.mounts[0]
    write_wav(mount / "store/real.wav", 2)
    (mount / "calls/l").mkdir(parents=True)
    (mount / "calls/l/link.wav").symlink_to(mount / "store/real.wav")
    size = (mount / "store/real.wav").stat().st_size
    env.add_calls(0, [spec("linked", [FileSpec("AUDIO", "/calls/l/link.wav", content="none", size=size)])])
    env.run_inprocess()
    assert env.marks(0) == {"linked": "S"}
    assert target_shas(env) == [sha256(mount / "store/real.wav")]


# --- §3.6 media ------------------------------------------------------------------------

def test_copy_layout_bytes_mode_and_size(env):
    teach_cftype(env, "INDEX", 64)  # an installation that has INDEX files
    start = dt.datetime(2024, 3, 5, 7, 41, 12, tzinfo=dt.timezone.utc)
    files = [wav("/rec/2024/a.wav", 1), wav("/rec/2024/b.wav", 3), blob("INDEX", "/rec/2024/x.idx", 5000)]
    env.add_calls(0, [CallSpec(sid="lay/out:1", start=start, files=files)])
    old_umask = os.umask(0)  # the modes must not depend on the daemon's umask
    try:
        env.run_inprocess()
    finally:
        os.umask(old_umask)
    assert env.marks(0) == {"lay/out:1": "S"}
    rows = target_files(env, "lay/out:1")
    assert len(rows) == 3 and target_couples(env)["lay/out:1"]["cfcnt"] == 3
    day_dir = env.target_path / "2024/03/05/07"
    by_source = {source_sha(env, 0, f.cfpath): f for f in files}
    for cftype, path, cfsize, _ in rows:
        p = Path(path)
        assert p.is_absolute() and p.parent == day_dir, path
        assert "/" not in p.name and ":" not in p.name  # the sid is sanitised
        f = by_source[sha256(p)]  # byte-identical to a source file
        assert cftype == f.cftype
        assert cfsize == p.stat().st_size == (Path(str(env.mounts[0]) + f.cfpath)).stat().st_size
        assert p.stat().st_mode & 0o002 == 0, oct(p.stat().st_mode)  # not world-writable
        assert stat.S_ISREG(p.stat().st_mode)
    assert day_dir.stat().st_mode & 0o002 == 0
    assert sorted(env.target_files()) == sorted(Path(r[1]) for r in rows)
    assert not [p for p in files_under(env.target_path) if p.name.startswith(TMP_PREFIX)]
    # the same call synced again from scratch lands at the same names (deterministic)
    names = sorted(r[1] for r in rows)
    env.target("DELETE FROM callrec.calls")
    env.target("DELETE FROM synchrod.synced")
    env.source(0, "UPDATE callrec.couples SET synchronized = NULL")
    for p in env.target_files():
        p.unlink()
    env.run_inprocess()
    assert sorted(r[1] for r in target_files(env, "lay/out:1")) == names


def test_no_world_writable_directory_whatever_the_umask(env):
    env.add_calls(0, [spec("um")])
    old_umask = os.umask(0)
    try:
        env.run_inprocess()
    finally:
        os.umask(old_umask)
    assert env.marks(0) == {"um": "S"}
    dirs = [p for p in env.target_path.rglob("*") if p.is_dir()]
    assert len(dirs) == 4  # YYYY, MM, DD, HH
    assert [str(d) for d in dirs if d.stat().st_mode & 0o002] == []


def test_size_mismatch_fails_copy_and_link_mode(env):
    set_source(env, 1, copy_files=False)
    for i in range(2):
        env.add_calls(i, [spec(f"short{i}", [wav(f"/s{i}/short.wav", 1, size=WAV_1S + 10)]),
                          spec(f"ok{i}", [wav(f"/s{i}/ok.wav", 1)])])
    env.run_inprocess()
    for i, name in enumerate(("rec1", "rec2")):
        assert env.marks(i) == {f"short{i}": None, f"ok{i}": "S"}
        assert outcomes(env, name)[f"short{i}"] == [("failed", "size_mismatch")]
    assert set(target_couples(env)) == {"ok0", "ok1"}
    assert target_shas(env, "ok0") == [source_sha(env, 0, "/s0/ok.wav")]
    assert len(env.target_files()) == 1  # only rec1's good call is copied


def test_verify_sha256(env):
    set_synchro(env, verify="sha256")
    set_source(env, 1, copy_files=False)
    for i in range(2):
        m = env.mounts[i]
        write_wav(m / f"h{i}/x.wav", 2)
        right = sha256(m / f"h{i}/x.wav")
        env.add_calls(i, [
            spec(f"nodigest{i}", [wav(f"/h{i}/a.wav", 1)]),
            spec(f"right{i}", [FileSpec("AUDIO", f"/h{i}/x.wav", content="none",
                                        size=(m / f"h{i}/x.wav").stat().st_size, digest=right.upper())]),
            spec(f"wrong{i}", [wav(f"/h{i}/w.wav", 1, digest="0" * 64)]),
        ])
    env.run_inprocess()
    for i, name in enumerate(("rec1", "rec2")):
        assert env.marks(i) == {f"nodigest{i}": "S", f"right{i}": "S", f"wrong{i}": None}
        assert outcomes(env, name)[f"wrong{i}"] == [("failed", "digest_mismatch")]
        for sid, cfpath in ((f"nodigest{i}", f"/h{i}/a.wav"), (f"right{i}", f"/h{i}/x.wav")):
            ((_, path, _, digest),) = target_files(env, sid)
            assert digest == source_sha(env, i, cfpath) == sha256(path)
    assert "wrong0" not in target_couples(env) and len(env.target_files()) == 2


def test_link_mode_references_the_recorder_file(env):
    set_source(env, 0, copy_files=False)
    env.add_calls(0, [spec("ln", [wav("/l/a.wav", 1), blob("VIDEO", "/l/v.vid", 3000)]),
                      spec("gone", [FileSpec("AUDIO", "/l/missing.wav", content="none")])])
    env.run_inprocess()
    assert env.marks(0) == {"ln": "S", "gone": None}
    assert outcomes(env)["gone"] == [("failed", "missing_file")]
    mount = str(env.mounts[0])
    assert sorted((t, p, s) for t, p, s, _ in target_files(env, "ln")) == [
        ("AUDIO", mount + "/l/a.wav", WAV_1S), ("VIDEO", mount + "/l/v.vid", 3000)]
    assert files_under(env.tmp / "replay") == []  # nothing copied


def test_replacing_a_linked_copy_never_deletes_the_recorder_file(env):
    set_source(env, 0, copy_files=False)
    env.add_calls(0, [spec("lk", [wav("/lk/a.wav", 1)])])
    env.add_calls(1, [spec("lk", [wav("/lk/a.wav", 1), wav("/lk/b.wav", 1)])])
    env.run_inprocess(only="rec1")
    env.run_inprocess(only="rec2")  # better: replaces the linked copy
    assert (env.marks(0), env.marks(1)) == ({"lk": "S"}, {"lk": "S"})
    assert all(p.startswith(str(env.target_path)) for _, p, _, _ in target_files(env, "lk"))
    assert (env.mounts[0] / "lk/a.wav").stat().st_size == WAV_1S


# --- §3.9 / §5 target paths -------------------------------------------------------------

def _fs_used_percent(path) -> float:
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return 100 * used / (used + st.f_bavail * st.f_frsize)


def test_storage_full_leaves_calls_unmarked(env):
    if _fs_used_percent(env.target_path) < 1:
        pytest.skip("the test filesystem is under 1 % used")
    set_target(env, default_watermark=1)
    set_synchro(env, mark_erroneous=True, max_attempts=1)
    env.add_calls(0, [spec("f1"), spec("f2", files=[wav("/f2/a.wav"), wav("/f2/b.wav")])])
    for _ in range(2):
        totals = env.run_inprocess()["rec1"]
        assert (totals.skipped, totals.failed, totals.erroneous, totals.synchronized) == (2, 0, 0, 0)
    assert env.marks(0) == {"f1": None, "f2": None}  # never E
    assert attempts(env) == {}  # no attempt counted
    assert {o for runs in outcomes(env).values() for o, _ in runs} == {"skipped"}
    assert target_couples(env) == {} and files_under(env.tmp / "replay") == []
    set_target(env, default_watermark=100)
    env.run_inprocess()
    assert env.marks(0) == {"f1": "S", "f2": "S"}


def _counts(env, *roots) -> list[int]:
    return [len(files_under(r)) for r in roots]


def test_higher_priority_path_gets_every_file(env):
    hi = env.tmp / "hi"
    hi.mkdir()
    set_target(env, additional_paths=[{"path": str(hi), "priority": 5, "balance": 1}])
    env.add_calls(0, [spec(f"p{n}", files=[wav(f"/p{n}/a.wav"), wav(f"/p{n}/b.wav")]) for n in range(5)])
    env.run_inprocess()
    assert _counts(env, env.target_path, hi) == [0, 10]
    assert all(p.startswith(str(hi) + "/") for _, p, _, _ in target_files(env))


def test_path_at_its_watermark_takes_no_files(env):
    if _fs_used_percent(env.target_path) < 1:
        pytest.skip("the test filesystem is under 1 % used")
    hi = env.tmp / "hi"
    hi.mkdir()
    set_target(env, additional_paths=[{"path": str(hi), "priority": 5, "watermark": 1}])
    env.add_calls(0, [spec(f"w{n}") for n in range(4)])
    env.run_inprocess()
    assert _counts(env, env.target_path, hi) == [4, 0]


def test_equal_priority_shares_by_balance(env):
    extra = env.tmp / "extra"
    extra.mkdir()
    set_target(env, additional_paths=[{"path": str(extra), "priority": 0, "balance": 3}])
    env.add_calls(0, [spec(f"b{n:02d}", minutes_ago=100 - n) for n in range(40)])
    env.run_inprocess()
    default, more = _counts(env, env.target_path, extra)
    assert default + more == 40
    assert 9 <= default <= 11 and 29 <= more <= 31, (default, more)


def test_video_paths_take_video_image_and_recd(env):
    teach_cftype(env, "INDEX", 64)  # an installation that has INDEX files
    screens = env.tmp / "screens"
    screens.mkdir()
    set_target(env, video_paths={"default_path": str(screens)})
    files = [wav("/v/a.wav"), blob("VIDEO", "/v/v.vid"), blob("IMAGE", "/v/i.png"),
             blob("RECD", "/v/s.recd"), blob("INDEX", "/v/x.idx"), blob("ARCHIVE", "/v/a.arc")]
    env.add_calls(0, [spec("vp", files)])
    env.run_inprocess()
    assert env.marks(0) == {"vp": "S"}
    where = {t: ("screens" if p.startswith(str(screens) + "/") else
                 "audio" if p.startswith(str(env.target_path) + "/") else p)
             for t, p, _, _ in target_files(env, "vp")}
    assert where == {"AUDIO": "audio", "INDEX": "audio", "ARCHIVE": "audio",
                     "VIDEO": "screens", "IMAGE": "screens", "RECD": "screens"}
    assert _counts(env, env.target_path, screens) == [3, 3]


def test_redelivery_never_touches_the_live_copy(env):
    """A source re-delivers a better version of a call it delivered before
    (same recorder files, so the same names): the new copies must not be
    renamed over the files committed rows use, and a failure half-way must
    leave the committed copy intact."""
    set_synchro(env, only_finished=False)
    env.add_calls(0, [spec("x1", [wav("/c/x1/a.wav"), wav("/c/x1/b.wav")], state="DECODED")])
    env.once("--until-idle", check_rc=0)
    live = {p: p.read_bytes() for p in env.target_files()}
    assert len(live) == 2
    env.source(0, "UPDATE callrec.couples SET state = 'FINISHED', synchronized = NULL")
    os.unlink(env.mounts[0] / "c/x1/b.wav")   # its second file cannot be read this time
    env.once(check_rc=1)
    assert {p: p.read_bytes() for p in env.target_files()} == live
    assert_consistent(env, {"x1"}, nsources=1)
    # once the file is back, the better copy replaces the old one under new names
    wav_path = env.mounts[0] / "c/x1/b.wav"
    write_wav(wav_path, 1, 300)
    env.target("UPDATE synchrod.attempts SET next_try_at = now() - interval '1 second'")
    env.source(0, "UPDATE callrec.cfiles SET cfsize = %s WHERE cfpath = '/c/x1/b.wav'",
               wav_path.stat().st_size)
    env.once("--until-idle", check_rc=0)
    assert env.target("SELECT state FROM callrec.couples") == [("FINISHED",)]
    assert_consistent(env, {"x1"}, nsources=1)
    assert not set(live) & {p for p in env.target_files()}
