"""How an archive run moves one file (synchrod.fs.archivecopy), on real
files: a byte-identical copy whose sha256 is the source's, modes 0640 /
0750, nothing left under a temporary name; a copy that does not read back as
its source (other bytes, more bytes) is refused; the media appears only once
verified; a size other than the replay database's is the file's failure and
writes nothing; a directory removed between two files of a run is made
again; a full destination is the destination's fault (TargetError), with no
temporary file left, and a media file whose sidecar does not fit is taken
away again."""
from __future__ import annotations

import hashlib
import os
import stat

import pytest
from _sync_helpers import tmpfs

from synchrod.core.naming import temp_name
from synchrod.errors import CallError, TargetError
from synchrod.fs import archivecopy

SIDECAR = b'{"sidecar": true}\n'


def _source(root, name="call.wav", data=None):
    path = root / "target" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else os.urandom(300_000))
    return path


def _archive(root, src, dest, expected=0, made=None):
    digests = []

    def sidecar(sha256):
        digests.append(sha256)
        return SIDECAR
    copied = archivecopy.archive_file([str(root / "target")], str(src), str(dest), expected,
                                      sidecar, made)
    return copied, digests


def test_a_copy_is_byte_identical_with_its_sha256_and_modes(tmp_path):
    src = _source(tmp_path)
    dest = tmp_path / "archive" / "task" / "2026-12-01" / "23" / "call.wav"
    copied, digests = _archive(tmp_path, src, dest, expected=src.stat().st_size)
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    assert copied.sha256 == want == digests[0] and copied.size == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()
    assert (dest.parent / "call.wav.json").read_bytes() == SIDECAR
    for f in (dest, dest.parent / "call.wav.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640
    for d in (dest.parent, dest.parent.parent, dest.parent.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o750
    assert sorted(p.name for p in dest.parent.iterdir()) == ["call.wav", "call.wav.json"]


def test_an_empty_file_and_a_file_of_several_read_back_chunks(tmp_path):
    for name, size in (("empty.wav", 0), ("long.wav", 2 * archivecopy.VERIFY_CHUNK + 7)):
        src = _source(tmp_path, name, os.urandom(size))
        dest = tmp_path / "archive" / name
        copied, _ = _archive(tmp_path, src, dest)
        assert copied.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
        assert dest.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("change", ["other bytes", "more bytes", "fewer bytes"])
def test_a_copy_that_does_not_read_back_as_its_source_is_refused(tmp_path, change):
    src = _source(tmp_path, data=os.urandom(100_000))
    copy = tmp_path / "copy"
    data = bytearray(src.read_bytes())
    if change == "other bytes":
        data[54_321] ^= 0x01
    elif change == "more bytes":
        data += b"\0"
    else:
        del data[-1]
    copy.write_bytes(bytes(data))
    a, b = os.open(copy, os.O_RDONLY), os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(CallError) as caught:
            archivecopy._read_back(a, b, src.stat().st_size, str(copy))
    finally:
        os.close(a)
        os.close(b)
    assert caught.value.reason == "verify_failed"


def test_a_size_other_than_the_databases_writes_nothing(tmp_path):
    src = _source(tmp_path, data=b"x" * 1000)
    dest = tmp_path / "archive" / "call.wav"
    with pytest.raises(CallError) as caught:
        _archive(tmp_path, src, dest, expected=999)
    assert caught.value.reason == "size_mismatch"
    assert not (tmp_path / "archive").exists() or not any((tmp_path / "archive").rglob("*"))


def test_a_directory_removed_between_two_files_is_made_again(tmp_path):
    made: set[str] = set()
    hour = tmp_path / "archive" / "task" / "2026-12-01" / "10"
    one, two = _source(tmp_path, "one.wav"), _source(tmp_path, "two.wav")
    _archive(tmp_path, one, hour / "one.wav", made=made)
    assert str(hour) in made
    for p in hour.iterdir():
        p.unlink()
    hour.rmdir()
    _archive(tmp_path, two, hour / "two.wav", made=made)
    assert (hour / "two.wav").read_bytes() == two.read_bytes()
    assert stat.S_IMODE(hour.stat().st_mode) == 0o750


def test_a_full_destination_is_the_destinations_fault_and_leaves_no_temporary(tmp_path):
    src = _source(tmp_path, data=os.urandom(3 << 20))
    with tmpfs(tmp_path / "small", "1m") as small:
        dest = small / "task" / "call.wav"
        with pytest.raises(TargetError) as caught:
            _archive(tmp_path, src, dest)
        assert caught.value.reason == "storage_full"
        assert not dest.exists() and not os.path.exists(temp_name(str(dest)))


def test_a_sidecar_that_does_not_fit_takes_its_media_away(tmp_path):
    src = _source(tmp_path, data=os.urandom(1 << 20))
    with tmpfs(tmp_path / "small", "1m") as small:      # the media fills it: no room for the sidecar
        dest = small / "call.wav"
        with pytest.raises(TargetError) as caught:
            _archive(tmp_path, src, dest)
        assert caught.value.reason == "storage_full"
        assert list(small.iterdir()) == [], "the media is not archived without its sidecar"
