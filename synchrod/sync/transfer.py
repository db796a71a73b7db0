"""The media phase of a cycle: where each file goes, and moving the bytes.

Placement happens on the event loop (pure, with the filesystem usage read
once per chunk); the copies run in the source's bounded pool, one share of
the calls per worker so the hand-off costs nothing per file. The cycle then
makes the copies durable with one ``syncfs`` per target filesystem.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from .. import errors, faults
from ..core import naming
from ..core.catalog import int_limit
from ..core.model import VIDEO_TYPES, CFile, TargetCouple
from ..core.pathsafety import unsafe_reason
from ..core.placement import Placer
from ..core.plan import Action
from ..core.records import Candidate, Delivery, Failure, NewFile, Transferred
from ..fs import copying, sourcefiles, targets
from ..replay import journal
from .engine import Engine
from .runtime import SourceRuntime


async def fill_unknown_sizes(runtime: SourceRuntime, candidates: Sequence[Candidate],
                             io_timeout: float) -> None:
    """A recorder may leave cfsize 0 (unknown); rank those calls by the real size."""
    unknown = [(p, f) for p in candidates for f in p.files if not f.cfsize]
    if not unknown:
        return
    mount = runtime.config.mount_path

    def sizes_of(cfpaths):  # in the pool: even resolving the mount may hang
        mount_real = os.path.realpath(mount)
        return [sourcefiles.size_of(mount_real, mount, cfpath) for cfpath in cfpaths]

    sizes = await runtime.media(io_timeout, sizes_of, [f.cfpath for _, f in unknown])
    for (p, f), size in zip(unknown, sizes):
        if size is not None:
            p.sizes[f.id] = size


def _destination(root: str, p: Candidate, f: CFile, source: str, live: set[str]) -> str:
    """The file's name on the target. A re-delivery of the same source file
    must not be renamed over the copy committed rows still use, so a name
    the target couple holds is skipped for a numbered variant."""
    rel = naming.relpath(p.couple.start_ts, p.couple.sid, source, f.id, f.cfpath)
    dest, n = os.path.join(root, rel), 0
    while dest in live:
        n += 1
        dest = os.path.join(root, naming.variant(rel, n))
    return dest


async def transfer(engine: Engine, runtime: SourceRuntime, candidates: Sequence[Candidate],
                   current: dict[str, TargetCouple], replay_conn) -> Transferred:
    """Copies (or checks, in link mode) the media of every call that needs it."""
    cfg, src = engine.config, runtime.config
    max_size = int_limit(engine.target_catalog, "cfiles", "cfsize")
    out = Transferred()
    deliveries, failures, skipped = out.deliveries, out.failures, out.skipped

    placers = {}
    if src.copy_files:
        # in the pool: a hung target must stall this source, not the daemon
        states = await runtime.media(cfg.synchro.io_timeout, targets.target_states, engine.config.target_paths())
        engine.note_target_states(states)
        usage = {p: st.usage for p, st in states.items() if st.problem is None and st.usage}
        # a filesystem at a storage level that takes no new files is closed to placement
        open_paths = engine.storage.accepting
        placers = {"audio": Placer([p for p in cfg.target.audio_paths if open_paths(p.path)],
                                   usage, engine.balance_ledger),
                   "video": Placer([p for p in cfg.target.video_paths if open_paths(p.path)],
                                   usage, engine.balance_ledger)}

    jobs: list[tuple[Candidate, list[tuple[CFile, str | None]]]] = []
    job_roots: list[set[str]] = []  # target paths each job writes below
    for p in candidates:
        if p.action is Action.MERGE:
            deliveries.append(Delivery(p.couple, p.quality(), p.action))
            continue
        bad = next(((f.cfpath, r) for f in p.files if (r := unsafe_reason(f.cfpath))), None)
        if bad:
            failures.append(Failure(p.couple, "unsafe_path", f"{bad[0]!r}: {bad[1]}"))
            continue
        if not src.copy_files:
            jobs.append((p, [(f, None) for f in p.files]))
            job_roots.append(set())
            continue
        target = current.get(p.couple.sid)
        live = set(target.file_paths) if target else set()
        dests, chosen = [], set()
        for f in p.files:
            # real sizes: a recorder's cfsize may be 0 (unknown)
            size = p.sizes.get(f.id) or f.cfsize
            root = placers["video" if f.cftype in VIDEO_TYPES else "audio"].place(size)
            if root is None:
                break
            chosen.add(root)
            dests.append((f, _destination(root, p, f, src.sysname, live)))
        if len(dests) < len(p.files):
            skipped.append(Failure(p.couple, "storage_full", "no open target path below its watermark"))
            continue
        jobs.append((p, dests))
        job_roots.append(chosen)

    if src.copy_files:
        await journal.record_intents(replay_conn, src.sysname, [d for _, ds in jobs for _, d in ds])

    results = await _run_jobs(runtime, jobs, cfg.synchro.verify == "sha256", cfg.synchro.io_timeout,
                              max_size, engine.storage.abandons)
    faults.point("after_copy", src.sysname)
    for (p, dests), chosen, result in zip(jobs, job_roots, results):
        if isinstance(result, BaseException):
            out.abandoned.extend(d for _, d in dests if d)
        if isinstance(result, errors.CallError):
            failures.append(Failure(p.couple, result.reason, result.detail))
        elif isinstance(result, errors.TargetError):
            skipped.append(Failure(p.couple, result.reason, result.detail))
        elif isinstance(result, BaseException):
            raise result
        else:
            deliveries.append(Delivery(p.couple, p.quality(), p.action, result))
            out.roots |= chosen
    return out


async def _run_jobs(runtime: SourceRuntime, jobs, sha: bool, io_timeout: float,
                    max_size: int | None, abandon: Callable[[str], bool]) -> list:
    """Runs the jobs in the source's pool, one chunk per worker; a result per
    job, in order: its files, or the exception that failed it. A copy whose
    filesystem reaches emergency meanwhile is abandoned (``abandon``)."""
    if not jobs:
        return []
    src = runtime.config
    workers = max(1, min(runtime.workers, len(jobs)))

    def run_chunk(chunk):
        mount_real = os.path.realpath(src.mount_path)  # in the pool: it may hang
        out = []
        for p, dests in chunk:
            try:
                out.append(_deliver_files(p, dests, mount_real, src.mount_path, src.copy_files, sha,
                                          max_size, abandon))
            except (errors.CallError, errors.TargetError) as exc:
                out.append(exc)
            runtime.touch()
        return out

    chunks = [jobs[i::workers] for i in range(workers)]
    done = await runtime.media_all(io_timeout, [(run_chunk, c) for c in chunks])
    results: list = [None] * len(jobs)
    for i, chunk_results in enumerate(done):
        results[i::workers] = chunk_results
    return results


def _deliver_files(p: Candidate, dests, mount_real: str, mount_path: str, copy: bool,
                   sha: bool, max_size: int | None,
                   abandon: Callable[[str], bool]) -> tuple[NewFile, ...]:
    # every file is located (nothing read) before any is read: a call with
    # one unsafe path has nothing read at all
    located = []
    try:
        for f, _ in dests:
            located.append(sourcefiles.locate(mount_real, mount_path, f.cfpath))
            size = located[-1][1].st_size
            if max_size is not None and size > max_size:
                raise errors.CallError("out_of_range", f"{f.cfpath}: {size} bytes, more than the "
                                      f"replay database's cfiles.cfsize holds ({max_size})")
        return tuple(_copy(located, dests, sha, abandon) if copy
                     else _link(located, dests, mount_path, sha))
    finally:
        for pfd, _ in located:
            os.close(pfd)


def _copy(located, dests, sha: bool, abandon: Callable[[str], bool]):
    written = []
    try:
        for (pfd, st), (f, dest) in zip(located, dests):
            sourcefiles.check_size(f.cfpath, st.st_size, f.cfsize)
            fd = sourcefiles.open_located(pfd, f.cfpath)
            try:
                written.append(dest)
                digest = copying.copy_to(fd, st.st_size, dest, sha, abandon)
            finally:
                os.close(fd)
            if digest is not None:
                sourcefiles.check_digest(f.cfpath, digest, f.digest)
            yield NewFile(f, st.st_size, dest, digest if sha else f.digest, copied=True)
    except BaseException:
        for dest in written:  # never a live file: see _destination
            copying.remove(dest)
        raise


def _link(located, dests, mount_path: str, sha: bool):
    for (pfd, st), (f, _) in zip(located, dests):
        sourcefiles.check_size(f.cfpath, st.st_size, f.cfsize)
        digest = None
        if sha:
            fd = sourcefiles.open_located(pfd, f.cfpath)
            try:
                digest = copying.hash_fd(fd, st.st_size)
            finally:
                os.close(fd)
            sourcefiles.check_digest(f.cfpath, digest, f.digest)
        yield NewFile(f, st.st_size, mount_path.rstrip("/") + f.cfpath,
                      digest if sha else f.digest, copied=False)
