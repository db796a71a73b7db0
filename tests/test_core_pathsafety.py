"""Path safety (SPEC §3.3): the lexical check of untrusted ``cfpath`` values
and the filesystem check in sourcefiles.locate/open_source, on real files,
symlinks and a FIFO under tmp_path."""
from __future__ import annotations

import os
import posixpath
import stat
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchrod.fs import sourcefiles
from synchrod.core.pathsafety import MAX_PATH, is_inside, join_under, unsafe_reason
from synchrod.errors import CallError

# --- lexical -----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/a", "/a/b.wav", "/opt/callrec/data/calls/2024/01/x.wav",
                                  "/a/.hidden", "/a/..b", "/a/b..", "/a/.../b", "/a b/c d",
                                  "/ä/ü.wav", "/a/b\\c"])
def test_safe_paths(path):
    assert unsafe_reason(path) is None


@pytest.mark.parametrize("path,reason", [
    ("", "empty path"),
    (None, "empty path"),
    (b"/a/b", "empty path"),
    ("a/b", "path is not absolute"),
    ("./a", "path is not absolute"),
    ("/", "path is the root directory"),
    ("//a", "empty path segment"),
    ("/a//b", "empty path segment"),
    ("/a/", "empty path segment"),
    ("/a/./b", "'.' path segment"),
    ("/.", "'.' path segment"),
    ("/a/..", "'..' path segment"),
    ("/a/../../etc/passwd", "'..' path segment"),
    ("/..", "'..' path segment"),
    ("/a\x00b", "NUL byte in path"),
    ("/" + "a" * MAX_PATH, "path too long"),
])
def test_unsafe_paths(path, reason):
    assert unsafe_reason(path) == reason


def test_max_length_boundary():
    assert unsafe_reason("/" + "a" * (MAX_PATH - 1)) is None
    assert unsafe_reason("/" + "a" * MAX_PATH) == "path too long"


segments = st.sampled_from(["a", "b.wav", ".", "..", "", "...", ".x", "x y", "é", "\x00", "c/"])
paths = st.builds(lambda lead, segs: lead + "/".join(segs),
                  st.sampled_from(["/", "//", "", "./", "///"]),
                  st.lists(segments, min_size=0, max_size=6)) | st.text(max_size=30)


def is_normalised_absolute(p: str) -> bool:
    return (p.startswith("/") and not p.startswith("//") and p != "/" and "\x00" not in p
            and posixpath.normpath(p) == p and len(p) <= MAX_PATH)


@given(paths)
def test_accepts_exactly_normalised_absolute_paths(p):
    assert (unsafe_reason(p) is None) == is_normalised_absolute(p)


@given(paths)
def test_safe_path_joined_under_mount_stays_under_it(p):
    if unsafe_reason(p) is None:
        joined = join_under("/mnt/rec", p)
        assert posixpath.normpath(joined) == joined
        assert is_inside("/mnt/rec", joined)


def test_join_under():
    assert join_under("/mnt/rec", "/a/b.wav") == "/mnt/rec/a/b.wav"
    assert join_under("/mnt/rec/", "/a/b.wav") == "/mnt/rec/a/b.wav"
    assert join_under("/", "/a/b.wav") == "/a/b.wav"


@pytest.mark.parametrize("root,path,inside", [
    ("/mnt/a", "/mnt/a", True),
    ("/mnt/a", "/mnt/a/x", True),
    ("/mnt/a/", "/mnt/a/x/y", True),
    ("/mnt/a", "/mnt/ab", False),
    ("/mnt/a", "/mnt/ab/x", False),
    ("/mnt/a", "/mnt", False),
    ("/mnt/a", "/etc/passwd", False),
    ("/", "/anything", True),
])
def test_is_inside(root, path, inside):
    assert is_inside(root, path) is inside


# --- on the filesystem --------------------------------------------------------------

@pytest.fixture
def mount(tmp_path):
    m = tmp_path / "mnt"
    (m / "rec" / "sub").mkdir(parents=True)
    (m / "rec" / "a.wav").write_bytes(b"RIFF" + b"\0" * 96)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"top secret")
    (tmp_path / "mnt2").mkdir()                    # a sibling sharing the mount's prefix
    (tmp_path / "mnt2" / "f").write_bytes(b"sibling")
    return m


def opened(mount_dir, cfpath, mount_path=None):
    fd, st_ = sourcefiles.open_source(os.path.realpath(mount_dir), str(mount_path or mount_dir), cfpath)
    try:
        return os.pread(fd, 1000, 0), st_
    finally:
        os.close(fd)


def refused(mount_dir, cfpath, mount_path=None) -> CallError:
    with pytest.raises(CallError) as info:
        sourcefiles.open_source(os.path.realpath(mount_dir), str(mount_path or mount_dir), cfpath)
    return info.value


def test_regular_file_inside_mount_opens(mount):
    data, st_ = opened(mount, "/rec/a.wav")
    assert data == b"RIFF" + b"\0" * 96
    assert st_.st_size == 100 and stat.S_ISREG(st_.st_mode)


def test_locate_reads_nothing_and_finds_the_real_file(mount):
    pfd, st_ = sourcefiles.locate(os.path.realpath(mount), str(mount), "/rec/a.wav")
    try:
        assert os.readlink(f"/proc/self/fd/{pfd}") == os.path.realpath(mount / "rec" / "a.wav")
        assert st_.st_size == 100
        with pytest.raises(OSError):
            os.read(pfd, 1)   # an O_PATH descriptor cannot read
    finally:
        os.close(pfd)


def test_mount_path_that_is_a_symlink_works(mount, tmp_path):
    link = tmp_path / "mntlink"
    link.symlink_to(mount)
    data, _ = opened(mount, "/rec/a.wav", mount_path=link)
    assert data.startswith(b"RIFF")


def test_mount_path_with_trailing_slash(mount):
    data, _ = opened(mount, "/rec/a.wav", mount_path=str(mount) + "/")
    assert data.startswith(b"RIFF")


@pytest.mark.parametrize("cfpath", ["/rec/../../outside/secret", "rec/a.wav", "/rec//a.wav",
                                    "/rec/./a.wav", "/", "", "/rec/a.wav/", "/rec/a\x00.wav"])
def test_lexically_unsafe_paths_are_refused_before_any_read(mount, cfpath):
    assert refused(mount, cfpath).reason == "unsafe_path"


def test_symlink_to_file_outside_mount_refused(mount, tmp_path):
    (mount / "rec" / "evil.wav").symlink_to(tmp_path / "outside" / "secret")
    err = refused(mount, "/rec/evil.wav")
    assert err.reason == "unsafe_path"
    assert "outside the mount" in err.detail


def test_absolute_symlink_to_etc_refused(mount):
    (mount / "rec" / "passwd.wav").symlink_to("/etc/passwd")
    assert refused(mount, "/rec/passwd.wav").reason == "unsafe_path"


def test_symlinked_directory_escaping_mount_refused(mount, tmp_path):
    (mount / "rec" / "esc").symlink_to(tmp_path / "outside")
    assert refused(mount, "/rec/esc/secret").reason == "unsafe_path"


def test_symlink_to_sibling_with_same_prefix_refused(mount):
    (mount / "rec" / "sib.wav").symlink_to("../../mnt2/f")
    assert refused(mount, "/rec/sib.wav").reason == "unsafe_path"


def test_relative_symlink_staying_inside_is_allowed(mount):
    (mount / "rec" / "sub" / "alias.wav").symlink_to("../a.wav")
    data, st_ = opened(mount, "/rec/sub/alias.wav")
    assert data.startswith(b"RIFF")
    assert st_.st_ino == os.stat(mount / "rec" / "a.wav").st_ino


def test_chain_of_symlinks_ending_outside_refused(mount, tmp_path):
    (mount / "rec" / "l2").symlink_to(tmp_path / "outside" / "secret")
    (mount / "rec" / "l1").symlink_to("l2")
    assert refused(mount, "/rec/l1").reason == "unsafe_path"


def test_dangling_symlink_outside_is_unsafe_inside_is_missing(mount, tmp_path):
    (mount / "rec" / "out").symlink_to(tmp_path / "outside" / "nope")
    (mount / "rec" / "in").symlink_to("nope.wav")
    assert refused(mount, "/rec/out").reason == "unsafe_path"
    assert refused(mount, "/rec/in").reason == "missing_file"


def test_missing_file(mount):
    err = refused(mount, "/rec/none.wav")
    assert err.reason == "missing_file"
    assert "/rec/none.wav" in err.detail


def test_directory_is_refused(mount):
    assert refused(mount, "/rec/sub").reason == "unsafe_path"


def test_symlink_loop_is_a_call_error(mount):
    (mount / "rec" / "loop").symlink_to("loop")
    assert refused(mount, "/rec/loop").reason == "unsafe_path"   # ELOOP: refused, never followed


def _refuse_in_thread(mount, cfpath):
    result: list = []

    def go():
        try:
            sourcefiles.open_source(os.path.realpath(mount), str(mount), cfpath)
            result.append("opened")
        except CallError as exc:
            result.append(exc.reason)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "open_source hung on a non-regular file"
    return result


def test_fifo_is_refused_without_hanging(mount):
    os.mkfifo(mount / "rec" / "pipe.wav")
    assert _refuse_in_thread(mount, "/rec/pipe.wav") == ["unsafe_path"]


def test_symlink_to_fifo_inside_mount_is_refused(mount):
    os.mkfifo(mount / "rec" / "pipe")
    (mount / "rec" / "pipe.wav").symlink_to("pipe")
    assert _refuse_in_thread(mount, "/rec/pipe.wav") == ["unsafe_path"]


def test_device_node_is_refused(mount):
    try:
        os.mknod(mount / "rec" / "null.wav", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    assert _refuse_in_thread(mount, "/rec/null.wav") == ["unsafe_path"]


@given(paths)
def test_locate_refuses_every_lexically_unsafe_path(p):
    # no filesystem access happens for these: the mount need not exist
    with pytest.raises(CallError) as info:
        sourcefiles.locate("/nonexistent-mount", "/nonexistent-mount", p)
    assert info.value.reason == ("unsafe_path" if unsafe_reason(p) is not None else "missing_file")
