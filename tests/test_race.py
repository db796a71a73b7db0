"""The same call recorded on two recorders, synchronised by two groups at
once: one target couple, the better media, the union of metadata, one S and
one N (or S/S when the later one was better), never a crash or duplicate."""
from __future__ import annotations

import os
import random
import subprocess
import time

import pytest

from _sync_helpers import define_phrases
from conftest import REPO, SYNCHROD, call
from invariants import assert_consistent, assert_media_matches_winner


def _start_held(env, source: str, release) -> subprocess.Popen:
    """`synchrod once --source` that stops after its media is durable, before
    its target transaction, until ``release`` exists."""
    e = dict(os.environ, SYNCHROD_FAULT="after_sync", SYNCHROD_FAULT_ACTION="hang",
             SYNCHROD_FAULT_RELEASE=str(release))
    return subprocess.Popen(SYNCHROD + ["once", "-c", str(env.config_path), "--source", source],
                            env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_media(env, source_index: int, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len([p for p in env.target_files() if f"+rec{source_index + 1}+" in p.name]) < n:
        assert time.monotonic() < deadline, "held process never copied its media"
        time.sleep(0.05)


@pytest.mark.parametrize("held_better, expect_held, expect_other", [
    (False, "N", "S"),   # the held one is worse: its copies become orphans, mark N
    (True, "S", "S"),    # the held one is better: it replaces the other's media
])
def test_interleaved_groups(env, tmp_path, held_better, expect_held, expect_other):
    sids = [f"r{i}" for i in range(8)]
    held_files, other_files = (3, 1) if held_better else (1, 3)
    define_phrases(env, env.target_dsn(), "v")  # voice tags map by phrase text
    env.add_calls(0, [call(s, files=held_files, extdata=[("k1", s)], voice_tags=[("v", 1)])
                      for s in sids])
    env.add_calls(1, [call(s, files=other_files, extdata=[("k2", s)]) for s in sids])
    release = tmp_path / "release"
    held = _start_held(env, "rec1", release)
    try:
        _wait_for_media(env, 0, len(sids) * held_files)
        # the other group delivers the same calls while rec1 waits to commit
        env.once("--source", "rec2", check_rc=0)
        assert set(env.marks(1).values()) == {"S"}
    finally:
        release.touch()
        out, err = held.communicate(timeout=60)
    assert held.returncode == 0, err[-2000:]
    assert set(env.marks(0).values()) == {expect_held}
    assert set(env.marks(1).values()) == {expect_other}
    assert_consistent(env, set(sids))
    assert_media_matches_winner(env)
    for s in sids:
        cnt, = env.target("SELECT cfcnt FROM callrec.couples WHERE sid = %s", s)
        assert cnt == (3,)
        keys = env.target("SELECT e.key FROM callrec.couple_extdata e JOIN callrec.couples c"
                          " ON c.id = e.cplid WHERE c.sid = %s ORDER BY 1", s)
        assert keys == [("k1",), ("k2",)]
        tags = env.target("SELECT count(*) FROM callrec.voice_tags v JOIN callrec.couples c"
                          " ON c.id = v.cplid WHERE c.sid = %s", s)
        assert tags == [(1,)]


def test_equal_quality_race_keeps_first(env, tmp_path):
    sids = [f"e{i}" for i in range(5)]
    env.add_calls(0, [call(s, files=2) for s in sids])
    env.add_calls(1, [call(s, files=2) for s in sids])
    release = tmp_path / "release"
    held = _start_held(env, "rec1", release)
    try:
        _wait_for_media(env, 0, len(sids) * 2)
        env.once("--source", "rec2", check_rc=0)
    finally:
        release.touch()
        held.communicate(timeout=60)
    assert set(env.marks(1).values()) == {"S"}
    assert set(env.marks(0).values()) == {"N"}   # a tie keeps what the target has
    assert_consistent(env, set(sids))
    # the held process's copies were never referenced and are gone
    assert not [p for p in env.target_files() if "+rec1+" in p.name]


def test_free_running_groups(env):
    """Both groups at full speed over 120 shared calls of random quality."""
    rng = random.Random(20261121)
    sids = [f"f{i:03d}" for i in range(120)]
    specs = [[], []]
    for i, s in enumerate(sids):
        for side in (0, 1):
            specs[side].append(call(s, minutes_ago=300 - i, files=rng.randint(1, 3),
                                    extdata=[(f"side{side}", "x")]))
    env.add_calls(0, specs[0])
    env.add_calls(1, specs[1])
    env.write_config(synchro={**env.raw["synchro"], "calls_per_period": 7})
    proc = env.once("--until-idle")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_consistent(env, set(sids))
    assert_media_matches_winner(env)
    m1, m2 = env.marks(0), env.marks(1)
    for i, s in enumerate(sids):
        n1, n2 = len(specs[0][i].files), len(specs[1][i].files)
        (cnt,), = env.target("SELECT cfcnt FROM callrec.couples WHERE sid = %s", s)
        assert cnt == max(n1, n2), s   # the better copy is the one kept
        assert "S" in (m1[s], m2[s])
        if n1 != n2:
            loser = m1[s] if n1 < n2 else m2[s]
            winner = m2[s] if n1 < n2 else m1[s]
            assert winner == "S"
            assert loser in ("S", "N")   # S when it came first and was replaced later
