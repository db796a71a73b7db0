"""A read-only FUSE passthrough that behaves like an NFS mount for the
benchmarks and the tests: every operation that reaches it waits ``delay``
(1 ms by default) before its answer, operations are served by many threads
at once (one request each, lookups in one directory included:
FUSE_PARALLEL_DIROPS), and reads can be made to hang, for real, inside the
kernel: while the hang file exists every READ blocks, and it returns once
the file is gone.

It speaks the kernel's FUSE protocol on /dev/fuse itself (no libfuse, whose
3.14 serialises lookups and ignores ``max_threads``) and mounts with
mount(2), so it needs root. Run it as its own process (a hung read must
never hang its user)::

    python -m synchrod.testing.slowfs SOURCE MOUNTPOINT [--delay-ms 1]
        [--threads 16] [--hang-file PATH]

or through :func:`mounted`, which starts it and unmounts it afterwards.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

IN_HEADER = struct.Struct("<IIQQIIIHH")       # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")            # len error unique
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")     # fuse_attr (88 bytes)
ENTRY = struct.Struct("<QQQQII")              # fuse_entry_out before its attr
ATTR_OUT = struct.Struct("<QII")              # fuse_attr_out before its attr
OPEN_OUT = struct.Struct("<QIi")
READ_IN = struct.Struct("<QQII")              # fh offset size read_flags (the rest unused)
INIT_IN = struct.Struct("<IIII")
INIT_OUT = struct.Struct("<IIIIHHIIHHI7I")
STATFS = struct.Struct("<QQQQQIIII6I")
DIRENT = struct.Struct("<QQII")

LOOKUP, FORGET, GETATTR, READLINK, OPEN, READ, STATFS_OP, RELEASE = 1, 2, 3, 5, 14, 15, 17, 18
GETXATTR, LISTXATTR, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR = 22, 23, 25, 26, 27, 28, 29
ACCESS, INTERRUPT, DESTROY, BATCH_FORGET = 34, 36, 38, 42
NO_REPLY = {FORGET, BATCH_FORGET, INTERRUPT}
WRITES = {4, 6, 8, 9, 10, 11, 12, 13, 16, 21, 24, 35, 43, 45, 47}   # setattr, mkdir, write, ...
ASYNC_READ, PARALLEL_DIROPS, MAX_PAGES = 1 << 0, 1 << 18, 1 << 22
MAX_IO = 1 << 20
CACHE_SECONDS = 1          # entries and attributes: a short cache, as NFS's attribute cache


class SlowFS:
    """The file system: node ids for the paths looked up, open files and
    directory listings by handle, every answer after ``delay`` seconds."""

    def __init__(self, source: str, delay: float, hang_file: str | None):
        self.source, self.delay, self.hang_file = os.path.realpath(source), delay, hang_file
        self.paths = {1: self.source}
        self.ids = {self.source: 1}
        self.listings: dict[int, list[tuple[str, int, int]]] = {}
        self.lock = threading.Lock()
        self.next_handle = 1

    def node(self, path: str) -> int:
        """The node id of ``path``, made the first time it is looked up."""
        with self.lock:
            if path not in self.ids:
                self.ids[path] = len(self.paths) + 1
                self.paths[self.ids[path]] = path
            return self.ids[path]

    def attr(self, st: os.stat_result, node: int) -> bytes:
        """A ``fuse_attr`` from a stat result."""
        return ATTR.pack(node, st.st_size, st.st_blocks, int(st.st_atime), int(st.st_mtime),
                         int(st.st_ctime), st.st_atime_ns % 10**9, st.st_mtime_ns % 10**9,
                         st.st_ctime_ns % 10**9, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
                         st.st_rdev, st.st_blksize, 0)

    def handle(self, opcode: int, node: int, body: bytes) -> bytes | int:
        """The reply's payload, or a negative errno."""
        if opcode in WRITES:
            return -errno.EROFS
        path = self.paths.get(node)
        if opcode == INIT:
            major, minor, readahead, flags = INIT_IN.unpack_from(body)
            want = flags & (ASYNC_READ | PARALLEL_DIROPS | MAX_PAGES)
            return INIT_OUT.pack(7, 31, min(readahead, MAX_IO), want, 64, 48, MAX_IO, 1,
                                 MAX_IO // 4096, 0, 0, *([0] * 7))
        if path is None:
            return -errno.ESTALE
        if opcode == LOOKUP:
            child = os.path.join(path, body.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
            st = os.lstat(child)
            n = self.node(child)
            return ENTRY.pack(n, 0, CACHE_SECONDS, CACHE_SECONDS, 0, 0) + self.attr(st, n)
        if opcode == GETATTR:
            return ATTR_OUT.pack(CACHE_SECONDS, 0, 0) + self.attr(os.lstat(path), node)
        if opcode == READLINK:
            return os.fsencode(os.readlink(path))
        if opcode == OPEN:
            return OPEN_OUT.pack(os.open(path, os.O_RDONLY | os.O_CLOEXEC), 0, 0)
        if opcode == READ:
            fh, offset, size, _ = READ_IN.unpack_from(body)
            while self.hang_file and os.path.exists(self.hang_file):
                time.sleep(0.05)     # a read that does not return while the file is there
            return os.pread(fh, size, offset)
        if opcode in (RELEASE, FLUSH):
            if opcode == RELEASE:
                os.close(struct.unpack_from("<Q", body)[0])
            return b""
        if opcode == OPENDIR:
            entries = []
            for e in os.scandir(path):
                st = e.stat(follow_symlinks=False)
                entries.append((e.name, st.st_ino, stat.S_IFMT(st.st_mode) >> 12))
            with self.lock:
                fh, self.next_handle = self.next_handle, self.next_handle + 1
                self.listings[fh] = entries
            return OPEN_OUT.pack(fh, 0, 0)
        if opcode == READDIR:
            fh, offset, size, _ = READ_IN.unpack_from(body)
            out = bytearray()
            for i, (name, ino, kind) in enumerate(self.listings.get(fh, [])[offset:], offset):
                raw = os.fsencode(name)
                rec = DIRENT.pack(ino, i + 1, len(raw), kind) + raw
                rec += b"\0" * (-len(rec) % 8)
                if len(out) + len(rec) > size:
                    break
                out += rec
            return bytes(out)
        if opcode == RELEASEDIR:
            self.listings.pop(struct.unpack_from("<Q", body)[0], None)
            return b""
        if opcode == STATFS_OP:
            v = os.statvfs(path)
            return STATFS.pack(v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree,
                               v.f_bsize, v.f_namemax, v.f_frsize, 0, *([0] * 6))
        if opcode == ACCESS:
            return b""
        return -errno.ENOSYS   # xattrs, locks, ...: not supported, the kernel stops asking

    def serve(self, dev: int, stop: threading.Event) -> None:
        """One worker: a request at a time from /dev/fuse, answered after the delay."""
        while not stop.is_set():
            try:
                req = os.read(dev, MAX_IO + 4096)
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                stop.set()       # ENODEV: unmounted
                return
            length, opcode, unique, node, *_ = IN_HEADER.unpack_from(req)
            if opcode in NO_REPLY:
                continue
            if self.delay:
                time.sleep(self.delay)
            try:
                payload = self.handle(opcode, node, req[IN_HEADER.size:length])
            except OSError as exc:
                payload = -(exc.errno or errno.EIO)
            error, data = (payload, b"") if isinstance(payload, int) else (0, payload)
            try:
                os.write(dev, OUT_HEADER.pack(OUT_HEADER.size + len(data), error, unique) + data)
            except OSError:
                pass         # the request was interrupted, or the mount is going
            if opcode == DESTROY:
                stop.set()


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MNT_DETACH = 1, 2, 4, 2


def serve(source: str, mountpoint: str, delay: float, threads: int, hang_file: str | None) -> int:
    """Mounts ``source`` at ``mountpoint`` and serves it until SIGTERM or an unmount."""
    dev = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    opts = (f"fd={dev},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,"
            f"max_read={MAX_IO}").encode()
    if _libc.mount(b"slowfs", os.fsencode(mountpoint), b"fuse.slowfs",
                   MS_RDONLY | MS_NOSUID | MS_NODEV, opts) != 0:
        print(f"slowfs: mount: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    fs, stop = SlowFS(source, delay, hang_file), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    workers = [threading.Thread(target=fs.serve, args=(dev, stop), daemon=True)
               for _ in range(threads)]
    for w in workers:
        w.start()
    while not stop.wait(0.2):
        pass
    _libc.umount2(os.fsencode(mountpoint), MNT_DETACH)
    return 0


@contextmanager
def mounted(source, mountpoint, delay_ms: float = 1.0, threads: int = 16, hang_file=None):
    """The passthrough mounted for the ``with`` block (its own process), then unmounted."""
    os.makedirs(mountpoint, exist_ok=True)
    cmd = [sys.executable, "-m", "synchrod.testing.slowfs", str(source), str(mountpoint),
           "--delay-ms", str(delay_ms), "--threads", str(threads)]
    if hang_file:
        cmd += ["--hang-file", str(hang_file)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"slowfs did not mount {mountpoint}: {proc.stderr.read()}")
        time.sleep(0.05)
    try:
        yield mountpoint
    finally:
        if hang_file and os.path.exists(hang_file):
            os.unlink(hang_file)   # hung reads return first
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    """The command line: ``SOURCE MOUNTPOINT [--delay-ms] [--threads] [--hang-file]``."""
    p = argparse.ArgumentParser(prog="python -m synchrod.testing.slowfs")
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("--delay-ms", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--hang-file")
    a = p.parse_args(argv)
    return serve(a.source, a.mountpoint, a.delay_ms / 1000, a.threads, a.hang_file)


if __name__ == "__main__":
    sys.exit(main())
