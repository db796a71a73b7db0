"""The NFS-like FUSE passthrough of the benchmarks and the hung-mount test
(synchrod.testing.slowfs), as a real kernel mount: files and symlinks read
back byte for byte, writes refused, every request delayed, requests on one
directory served in parallel (a thread pool reading them much faster than
one reader), and reads that block while the hang file exists and return
once it is gone."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from synchrod.testing import slowfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="mounting FUSE needs root and /dev/fuse")
N = 60


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src" / "calls"
    src.mkdir(parents=True)
    for i in range(N):
        (src / f"f{i:02d}.wav").write_bytes(os.urandom(50_000 + i))
    os.symlink("f00.wav", src / "link.wav")
    return tmp_path / "src"


def _read(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def test_files_and_symlinks_read_back_and_writes_are_refused(tree, tmp_path):
    with slowfs.mounted(tree, tmp_path / "mnt", delay_ms=0) as mnt:
        names = sorted(os.listdir(os.path.join(mnt, "calls")))
        assert names == sorted([f"f{i:02d}.wav" for i in range(N)] + ["link.wav"])
        for i in (0, 7, N - 1):
            assert _read(f"{mnt}/calls/f{i:02d}.wav") == (tree / "calls" / f"f{i:02d}.wav").read_bytes()
        assert os.readlink(f"{mnt}/calls/link.wav") == "f00.wav"
        assert _read(f"{mnt}/calls/link.wav") == (tree / "calls" / "f00.wav").read_bytes()
        assert os.stat(f"{mnt}/calls/f03.wav").st_size == 50_003
        with pytest.raises(OSError):
            open(f"{mnt}/calls/new.wav", "wb")
        assert os.statvfs(mnt).f_blocks > 0


def test_each_request_is_delayed_and_served_in_parallel(tree, tmp_path):
    with slowfs.mounted(tree, tmp_path / "mnt", delay_ms=5, threads=16) as mnt:
        paths = [f"{mnt}/calls/f{i:02d}.wav" for i in range(N)]
        t0 = time.perf_counter()
        for p in paths[: N // 2]:
            _read(p)
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(_read, paths[N // 2:]))
        parallel = time.perf_counter() - t0
    # lookup, open, read, flush, release: at least 5 requests of 5 ms a file
    assert serial >= (N // 2) * 5 * 0.005, serial
    assert parallel < serial / 3, (serial, parallel)


def test_reads_block_while_the_hang_file_exists(tree, tmp_path):
    hang = tmp_path / "hang"
    with slowfs.mounted(tree, tmp_path / "mnt", delay_ms=0, hang_file=hang) as mnt:
        os.stat(f"{mnt}/calls/f01.wav")            # metadata still answers
        hang.touch()
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_read(f"{mnt}/calls/f01.wav")),
                                  daemon=True)
        reader.start()
        reader.join(1.5)
        assert reader.is_alive() and not got, "the read returned while reads hang"
        assert os.stat(f"{mnt}/calls/f02.wav").st_size == 50_002
        hang.unlink()
        reader.join(5)
        assert got == [(tree / "calls" / "f01.wav").read_bytes()]
