"""The end state every interruption must converge to, checked on the real
databases and the real target directory."""
from __future__ import annotations

import hashlib
from pathlib import Path

from synchrod.core.naming import TMP_PREFIX


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_consistent(env, expected_sids: set[str], nsources: int = 2) -> None:
    # exactly once on the target
    rows = env.target("SELECT sid, count(*) FROM callrec.couples GROUP BY sid")
    counts = dict(rows)
    assert set(counts) == expected_sids, (sorted(set(counts) ^ expected_sids))[:10]
    assert all(n == 1 for n in counts.values())

    # every source mark is backed by a target row and a synced record
    synced = {(s, c): m for s, c, m in env.target("SELECT source, source_cplid, mark FROM synchrod.synced")}
    for i in range(nsources):
        name = env.raw["sources"][i]["sysname"]
        for cplid, sid, mark in env.source(i, "SELECT id, sid, synchronized FROM callrec.couples"):
            if mark in ("S", "N"):
                assert sid in counts, f"{name}:{sid} marked {mark} without a target row"
                assert synced.get((name, cplid)) == mark, (name, sid, mark, synced.get((name, cplid)))
            elif sid in expected_sids and mark is None:
                # unmarked only if another source delivered it
                assert sid in counts

    # files on disk are exactly the files the target references, complete
    files = env.target("SELECT cfpath, cfsize FROM callrec.cfiles")
    referenced = {p for p, _ in files if p.startswith(str(env.target_path))}
    on_disk = {str(p) for p in env.target_files()}
    temps = [p for p in on_disk if Path(p).name.startswith(TMP_PREFIX)]
    assert not temps, temps[:5]
    assert on_disk == referenced, {"orphans": sorted(on_disk - referenced)[:5],
                                   "missing": sorted(referenced - on_disk)[:5]}
    for path, size in files:
        if path in referenced:
            assert Path(path).stat().st_size == size, path

    # the journal is empty once everything is repaired
    assert env.target("SELECT count(*) FROM synchrod.pending_files")[0][0] == 0
    assert env.target("SELECT count(*) FROM synchrod.pending_unlink")[0][0] == 0


def assert_media_matches_winner(env) -> None:
    """Each copied target file is byte-identical to the source file it came from."""
    names = [s["sysname"] for s in env.raw["sources"]]
    for cfpath, in env.target("SELECT cfpath FROM callrec.cfiles"):
        name = Path(cfpath).name  # <sid>+<source>+<cfile id><ext>
        source = next(n for n in names if f"+{n}+" in name)
        i = names.index(source)
        cfid = int(name.rsplit("+", 1)[1].split(".")[0])
        (src_path,), = env.source(i, "SELECT cfpath FROM callrec.cfiles WHERE id = %s", cfid)
        assert _sha(cfpath) == _sha(str(env.mounts[i]) + src_path), cfpath
