"""Compaction / flush events from the store's info LOG, with the MANIFEST fallback (``InfoLogWatcher``).

Components (see docs/design.md): each is built as ``Cls(ctx.config)`` and run with
``await comp.run(ctx)`` until ``ctx.stop`` is set. They never raise on a file's content; they
persist their position only through ``ctx.bus.emit(events, checkpoints=...)``.

``InfoLogWatcher`` (checkpoint ``"infolog"``, plus ``"infolog_files"``):

- Tails ``<db>/LOG`` (or ``<db_log_dir>/<flattened db path>_LOG`` when the store's OPTIONS set
  ``db_log_dir``, see :func:`find_info_log`) (polling every ``poll_s``; LOG lines arrive in bursts anyway). Only
  complete lines are parsed; a partial last line waits. The checkpoint is (inode, offset of the
  end of the last complete line consumed), committed with the events that line range produced.
- Rotation: when ``LOG`` gets a new inode, the old file (renamed ``LOG.old.<micros>``) is read
  to its end through the still-open fd, then the new ``LOG`` from offset 0. At start-up with a
  checkpoint whose inode is no longer ``LOG``, the ``LOG.old.*`` with that inode is finished
  first. A LOG that shrinks (same inode) starts over at 0. The first start without a
  checkpoint reads the current LOG from its beginning (the store's current session).
- Events come from :class:`cdc.infolog.CompactionTracker`. ``running`` progress: every
  ``poll_s`` while a compaction runs, its output SSTs (files numbered above its inputs that are
  not in the MANIFEST yet and are not flush outputs) are stat'ed; bytes written vs input bytes
  is reported at most once per ``progress_interval_s`` (default 0.25 s = 4/s) per job and only
  when the bytes changed. With several compactions running at once, output files not yet
  claimed by a ``Generated table`` / ``table_file_creation`` line go to the most recently
  started job (an estimate; documented).
- MANIFEST fallback: the MANIFEST named by CURRENT is followed edit by edit; files a
  VersionEdit deletes (or moves to another level) that the LOG did not explain within
  ``manifest_grace_s`` (the LOG may lag up to ~10 s; 0.5 s for LevelDB, which logs no
  EVENT_LOG_v1) are reported as one ``completed`` compaction per column family with
  ``details.source = "manifest"`` (inputs per level, outputs, bytes). The checkpoint
  ``"infolog_files"`` keeps (MANIFEST name, offset accounted for, live SST set): after a
  restart, edits past that offset are examined one by one; if the store switched to a new
  MANIFEST meanwhile, the whole live set is compared with the saved one instead.

Invariant: every compaction / flush notice is emitted once, in order, across restarts (the
checkpoints are committed with the events they cover); the MANIFEST is read through the shared
follower (:mod:`cdc.sources.manifest`), never on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from typing import Any

import msgspec

from cdc.model.config import Config
from cdc.model.context import Context
from cdc.format.infolog import CompactionJob, CompactionTracker, parse_log_bytes
from cdc.format.manifest import ManifestState
from cdc.model.events import CompactionStatus
from cdc.ops.common import count_events, sleep_or_stop
from cdc.ops.common import now_ms as _now_ms
from cdc.sources.manifest import ManifestCursor, ManifestFollower
from cdc.sources.store import open_readonly, read_store_file

log = logging.getLogger("cdc.ops")

__all__ = ["InfoLogWatcher", "find_info_log"]

_MANIFEST_RE = re.compile(r"^MANIFEST-(\d+)$")
_OPTIONS_RE = re.compile(r"^OPTIONS-(\d+)$")


def find_info_log(db_dir: str) -> tuple[str, str]:
    """(directory, file name) of the store's info LOG.

    ``<db>/LOG`` unless the newest ``OPTIONS-N`` sets ``db_log_dir``: then RocksDB writes
    ``<db_log_dir>/<flattened absolute DB path>_LOG`` (path without its leading ``/``, every
    character other than letters, digits, ``.``, ``-``, ``_`` replaced by ``_``).
    """
    try:
        opts = [(int(m.group(1)), n) for n in os.listdir(db_dir) if (m := _OPTIONS_RE.match(n))]
    except OSError:
        opts = []
    log_dir = ""
    if opts:
        try:
            text = read_store_file(os.path.join(db_dir, max(opts)[1])).decode("utf-8", "replace")
            for line in text.splitlines():
                key, eq, value = line.strip().partition("=")
                if eq and key.strip() == "db_log_dir":
                    log_dir = value.strip()
                    break
        except OSError:
            pass
    if not log_dir:
        return db_dir, "LOG"
    flat = "".join(c if (c.isascii() and c.isalnum()) or c in ".-_" else "_" for c in os.path.abspath(db_dir).lstrip("/"))
    return log_dir, flat + "_LOG"
_SST_RE = re.compile(r"^(\d+)\.(?:sst|ldb)$")
_MAX_READ = 4 << 20
_MAX_EVENTS_PER_STEP = 5000  # a long LOG at first start is emitted in slices (bus backpressure)
_MAX_LINE = 1 << 20  # a "line" longer than this without a newline is parsed as is



class _JobCheckpoint(msgspec.Struct, array_like=True):
    """A compaction running at checkpoint time (so a restarted daemon keeps tracking it)."""

    job: int
    cf: str
    inputs: dict[str, list[int]]
    input_bytes: int | None
    started_us: int | None
    reason: str | None
    output_level: int | None


class _InfologCheckpoint(msgspec.Struct, array_like=True):
    ino: int
    offset: int
    session_id: str = ""  # the store's DB Session ID of the lines before offset
    jobs: list[_JobCheckpoint] = []  # compactions started and not finished before offset


_cp_enc = msgspec.msgpack.Encoder()
_cp_dec = msgspec.msgpack.Decoder(_InfologCheckpoint)
class _FilesCheckpoint(msgspec.Struct, array_like=True):
    """The MANIFEST position and live SST set the fallback has accounted for."""

    manifest: str  # MANIFEST-NNNNNN read
    offset: int  # end of the last VersionEdit accounted for
    files: dict[int, tuple[int, int, int]]  # number -> (level, cf_id, size)


_files_dec = msgspec.msgpack.Decoder(_FilesCheckpoint)


def _list_ssts(db_dir: str) -> dict[int, int]:
    """SST numbers -> sizes in ``db_dir`` (files that vanish meanwhile are skipped)."""
    out: dict[int, int] = {}
    try:
        with os.scandir(db_dir) as it:
            for e in it:
                m = _SST_RE.match(e.name)
                if m is None:
                    continue
                try:
                    out[int(m.group(1))] = e.stat().st_size
                except OSError:
                    continue
    except OSError:
        pass
    return out


_MfView = tuple[dict[int, str], dict[int, str], dict[int, tuple[int, int, int]]]


def _mf_view(state: ManifestState) -> _MfView:
    """(live cf names, dropped cf names, live SSTs as number -> (level, cf id, size))."""
    return dict(state.cf_names), dict(state.dropped_cfs), {n: (f.level, f.cf_id, f.size) for n, f in state.files.items()}


class InfoLogWatcher:
    """Compaction / flush events from the store's info LOG (+ MANIFEST fallback)."""

    name = "infolog"
    poll_s = 0.1
    progress_interval_s = 0.25
    manifest_interval_s = 0.5
    manifest_grace_s = 11.0
    idle_checkpoint_s = 2.0

    def __init__(self, config: Config, *, manifest: ManifestFollower | None = None) -> None:
        """``manifest``: the MANIFEST follower shared with capture (default: its own)."""
        self.config = config
        self.db_dir: str = config.db
        self._locate_log()
        self.manifest_grace_s = float(config.ops_manifest_grace_s)
        self.tracker = CompactionTracker()
        self._fd: int | None = None
        self._ino = 0
        self._offset = 0  # end of the last complete line consumed
        self._buf = b""
        self._dirty_cp = False
        self._last_cp_s = 0.0
        self._leveldb = False
        # progress
        self._last_progress: dict[tuple[int, int], tuple[float, int]] = {}
        # manifest fallback
        self._files: dict[int, tuple[int, int, int]] | None = None  # number -> (level, cf_id, size)
        self._mf_name: str | None = None
        self._cp_manifest = ""  # MANIFEST name / offset accounted for before a restart
        self._cp_offset = 0
        self._mf_offset = 0  # end of the last MANIFEST record accounted for
        self._mf_silent_until = -1
        self._mf_per_edit = False
        self._manifest_follower = manifest if manifest is not None else ManifestFollower(config.db)
        self._mf_cursor: ManifestCursor | None = None
        self._manifest_check_s = 0.0
        self._pending: dict[int, tuple[float, int, int, int]] = {}  # number -> (seen_s, level, cf_id, size)
        self._pending_added: dict[int, tuple[int, int, int]] = {}  # outputs seen with pending inputs
        self._cf_names: dict[int, str] = {0: "default"}
        self._dropped: set[int] = set()
        self.stats = {"lines": 0, "events": 0, "rotations": 0, "restarts": 0, "manifest_reports": 0}

    # ------------------------------------------------------------------ run
    async def run(self, ctx: Context) -> None:
        self._leveldb = ctx.store is not None and ctx.store.kind == "leveldb"
        if self._leveldb:  # LevelDB logs no EVENT_LOG_v1: the MANIFEST is the only source
            self.manifest_grace_s = min(self.manifest_grace_s, 0.5)
        self._manifest_follower.bind(self.db_dir, leveldb=self._leveldb)
        self._locate_log()
        self._restore(ctx)
        try:
            while not ctx.stop.is_set():
                try:
                    await self._step(ctx)
                except Exception as exc:  # never die on a file's content
                    log.warning("infolog: %s: %s", type(exc).__name__, exc)
                if await sleep_or_stop(ctx.stop, self.poll_s):
                    break
        finally:
            self._close_fd()

    def _locate_log(self) -> None:
        self.log_dir, self.log_name = find_info_log(self.db_dir)
        self.log_path = os.path.join(self.log_dir, self.log_name)
        self._old_re = re.compile("^" + re.escape(self.log_name) + r"\.old\.(\d+)$")

    def _restore(self, ctx: Context) -> None:
        journal = ctx.journal
        raw = journal.get_checkpoint("infolog")
        if raw:
            try:
                cp = _cp_dec.decode(raw)
                self._open_resume(cp.ino, cp.offset)
                self.tracker.session_id = cp.session_id or None
                for j in cp.jobs:
                    cj = CompactionJob(j.job, j.cf, 0)
                    cj.inputs, cj.input_bytes, cj.started_us = j.inputs, j.input_bytes, j.started_us
                    cj.reason, cj.output_level = j.reason, j.output_level
                    self.tracker.compactions[j.job] = cj
                    self.tracker._cover(cj.input_numbers)
            except (msgspec.DecodeError, OSError) as exc:
                log.warning("infolog: ignoring unreadable checkpoint: %s", exc)
        files_raw = journal.get_checkpoint("infolog_files")
        if files_raw:
            try:
                fcp = _files_dec.decode(files_raw)
                self._files = dict(fcp.files)
                self._cp_manifest, self._cp_offset = fcp.manifest, fcp.offset
            except msgspec.DecodeError:
                self._files = None

    def sst_bytes(self) -> dict[str, dict[str, int]]:
        """Live SST bytes by cf name and level (``"0"``, ``"1"``, ...) as the MANIFEST says (stats frames)."""
        sst: dict[str, dict[str, int]] = {}
        for level, cf_id, size in list((self._files or {}).values()):
            per = sst.setdefault(self._cf_names.get(cf_id, f"cf{cf_id}"), {})
            per[str(level)] = per.get(str(level), 0) + int(size)
        return sst

    def running_compactions(self) -> int:
        """Compactions started and not finished (stats frames)."""
        return len(self.tracker.running())

    def _open_resume(self, ino: int, offset: int) -> None:
        """Open the file with inode ``ino`` (LOG or a LOG.old.*) at ``offset``."""
        cands = [self.log_path]
        with contextlib.suppress(OSError):
            cands += sorted(os.path.join(self.log_dir, n) for n in os.listdir(self.log_dir) if self._old_re.match(n))
        for path in cands:
            try:
                fd = open_readonly(path)
            except OSError:
                continue
            st = os.fstat(fd)
            if st.st_ino == ino:
                self._fd, self._ino = fd, ino
                self._offset = offset if offset <= st.st_size else 0
                return
            os.close(fd)
        # The checkpointed file is gone: start over with the current LOG (the MANIFEST fallback
        # reports compactions whose lines were lost).

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------ step
    async def _step(self, ctx: Context) -> None:
        now_s = time.monotonic()
        events: list[Any] = await asyncio.to_thread(self._tail_and_progress, now_s)
        try:
            events += await self._manifest(now_s)
        except Exception as exc:  # the LOG's events (already consumed) must still be emitted
            log.warning("infolog: MANIFEST fallback: %s: %s", type(exc).__name__, exc)
        cps: dict[str, bytes] | None = None
        if events or (self._dirty_cp and now_s - self._last_cp_s >= self.idle_checkpoint_s):
            jobs = [
                _JobCheckpoint(j.job, j.cf, j.inputs, j.input_bytes, j.started_us, j.reason, j.output_level)
                for j in self.tracker.running()
            ]
            cps = {"infolog": _cp_enc.encode(_InfologCheckpoint(self._ino, self._offset, self.tracker.session_id or "", jobs))}
            self._dirty_cp = False
            self._last_cp_s = now_s
        if self._files_dirty and not self._pending:
            # only once every file change is accounted for (reported or explained by the LOG),
            # and in the same transaction as the events that did so
            cps = cps or {}
            cps["infolog_files"] = _cp_enc.encode(
                _FilesCheckpoint(self._mf_name or "", self._mf_offset if self._mf_name else 0, self._files or {})
            )
            self._files_dirty = False
        if events or cps:
            self.stats["events"] += len(events)
            count_events(ctx, events)
            await ctx.bus.emit(events, checkpoints=cps)

    _files_dirty = False

    def _tail_and_progress(self, now_s: float) -> list[Any]:
        """Runs in a worker thread (one at a time): LOG lines -> events, then progress."""
        out = self._tail()
        try:
            out += self._progress(now_s)
        except Exception as exc:  # progress is best effort; the LOG's events must go out
            log.warning("infolog: progress: %s: %s", type(exc).__name__, exc)
        return out

    # ------------------------------------------------------------------ LOG tail
    def _tail(self) -> list[Any]:
        out: list[Any] = []
        try:
            st = os.stat(self.log_path)
        except OSError:
            st = None
        if self._fd is None:
            if st is None:
                return out
            try:
                self._fd = open_readonly(self.log_path)
            except OSError:
                return out
            fst = os.fstat(self._fd)
            self._ino, self._offset, self._buf = fst.st_ino, 0, b""
            self._dirty_cp = True
        # read what the current fd has
        out += self._read_fd(final=False)
        if st is not None and st.st_ino != self._ino:
            # rotated (LOG.old.<micros>) or recreated: finish the old file, then any LOG.old.*
            # rolled after it (several rotations between two polls), then the new LOG
            try:
                old_mtime_ns = os.fstat(self._fd).st_mtime_ns if self._fd is not None else 0
            except OSError:
                old_mtime_ns = 0
            out += self._read_fd(final=True)
            self._close_fd()
            self.stats["rotations"] += 1
            for path in self._newer_old_logs(self._ino, old_mtime_ns, st.st_ino):
                try:
                    self._fd = open_readonly(path)
                except OSError:
                    continue
                self._ino, self._offset, self._buf = os.fstat(self._fd).st_ino, 0, b""
                out += self._read_fd(final=True)
                self._close_fd()
            try:
                self._fd = open_readonly(self.log_path)
            except OSError:
                return out
            self._ino, self._offset, self._buf = os.fstat(self._fd).st_ino, 0, b""
            self._dirty_cp = True
            out += self._read_fd(final=False)
        elif st is not None and st.st_size < self._offset:
            # same inode, shorter: the LOG started over
            self._offset, self._buf = 0, b""
            self._dirty_cp = True
            self.stats["restarts"] += 1
            out += self._read_fd(final=False)
        return out

    def _newer_old_logs(self, ino: int, mtime_ns: int, current_ino: int) -> list[str]:
        """``LOG.old.<micros>`` files rolled after the file with inode ``ino``, oldest first."""
        olds: list[tuple[int, str, int]] = []
        try:
            names = os.listdir(self.log_dir)
        except OSError:
            return []
        for n in names:
            m = self._old_re.match(n)
            if m is None:
                continue
            path = os.path.join(self.log_dir, n)
            try:
                fino = os.stat(path).st_ino
            except OSError:
                continue
            olds.append((int(m.group(1)), path, fino))
        olds.sort()
        idx = next((i for i, (_, _, fino) in enumerate(olds) if fino == ino), None)
        if idx is not None:
            newer = olds[idx + 1 :]
        else:  # our file is gone: take those rolled after its last write
            newer = [o for o in olds if o[0] * 1000 > mtime_ns]
        return [path for _, path, fino in newer if fino not in (ino, current_ino)]

    def _read_fd(self, *, final: bool) -> list[Any]:
        out: list[Any] = []
        fd = self._fd
        if fd is None:
            return out
        pos = self._offset + len(self._buf)
        while True:
            try:
                chunk = os.pread(fd, _MAX_READ, pos)
            except OSError:
                break
            if not chunk:
                break
            pos += len(chunk)
            data = self._buf + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > _MAX_LINE:
                    cut = len(data) - 1
                else:
                    self._buf = data
                    continue
            complete, self._buf = data[: cut + 1], data[cut + 1 :]
            out += self._parse(complete)
            self._offset += len(complete)
            self._dirty_cp = True
            if len(chunk) < _MAX_READ or (not final and len(out) >= _MAX_EVENTS_PER_STEP):
                break
        if final and self._buf:
            out += self._parse(self._buf)
            self._offset += len(self._buf)
            self._buf = b""
        return out

    def _parse(self, data: bytes) -> list[Any]:
        out: list[Any] = []
        now = _now_ms()
        feed = self.tracker.feed
        self.stats["lines"] += data.count(b"\n")
        for n in parse_log_bytes(data):
            out += feed(n, now)
        return out

    # ------------------------------------------------------------------ progress
    def _progress(self, now_s: float) -> list[CompactionStatus]:
        running = self.tracker.running()
        if not running:
            self._last_progress.clear()
            return []
        ssts = _list_ssts(self.db_dir)
        live = self._files or {}
        claimed: dict[int, int] = {}
        for cj in running:
            for num in cj.outputs:
                claimed[num] = cj.job
        latest = max(running, key=lambda j: (j.started_us or 0, j.job))
        min_input = min((max(j.input_numbers) for j in running if j.input_numbers), default=0)
        written: dict[int, tuple[int, list[int]]] = {j.job: (0, []) for j in running}
        by_job = {j.job: j for j in running}
        for num, size in ssts.items():
            owner = claimed.get(num)
            if owner is None:
                if num <= min_input or num in live or num in self.tracker.flush_outputs:
                    continue
                # unclaimed: the newest job whose inputs are all below this number
                owner = latest.job
                cj = by_job[owner]
                if cj.input_numbers and num <= max(cj.input_numbers):
                    continue
            b, files = written[owner]
            written[owner] = (b + size, files + [num])
        out: list[CompactionStatus] = []
        now_ms = _now_ms()
        for cj in running:
            b, files = written[cj.job]
            key = (self.tracker.session, cj.job)
            last = self._last_progress.get(key)
            if last is not None and (now_s - last[0] < self.progress_interval_s or last[1] == b):
                continue
            if last is None and b == 0:
                continue
            self._last_progress[key] = (now_s, b)
            out.append(self.tracker.progress_event(cj, b, sorted(files), now_ms))
        live_keys = {(self.tracker.session, j.job) for j in running}
        for k in [k for k in self._last_progress if k not in live_keys]:
            del self._last_progress[k]
        return out

    # ------------------------------------------------------------------ MANIFEST fallback
    def _read_manifest(self) -> tuple[_MfView, list[tuple[int, int, int, int]], list[tuple[int, int, int, int]], bool] | None:
        """Take the MANIFEST edits read since the last look (runs in a worker thread).

        Returns None when nothing changed, else ``(view, removed, added, per_edit)``:
        ``removed`` / ``added`` are ``(number, level, cf_id, size)`` from each VersionEdit read
        past what was already accounted for (``per_edit`` True). When the MANIFEST is new to
        us and not the one of the checkpoint (store restarted while we were down), edits give
        no removals (``per_edit`` False) and the caller diffs the whole file set instead.
        The reading itself is the shared follower's (:mod:`cdc.sources.manifest`).
        """
        if self._mf_cursor is None:
            self._mf_cursor = self._manifest_follower.subscribe()
        upd = self._mf_cursor.poll(_mf_view)
        if upd is None:
            return None
        if upd.fresh:
            self._mf_silent_until = self._cp_offset if upd.name == self._cp_manifest else -1
            self._mf_per_edit = upd.name == self._cp_manifest
        self._mf_name, self._mf_offset = upd.name, upd.offset
        removed: list[tuple[int, int, int, int]] = []
        added: list[tuple[int, int, int, int]] = []
        if self._mf_per_edit:
            for e in upd.edits:
                if e.offset >= self._mf_silent_until:
                    removed.extend(e.deleted)
                    added.extend((number, level, e.edit.cf_id, fsize) for level, number, fsize, *_rest in e.edit.new_files)
        per_edit = self._mf_per_edit
        self._mf_per_edit = True  # from now on this MANIFEST is followed edit by edit
        self._mf_silent_until = -1
        return upd.view, removed, added, per_edit  # type: ignore[return-value]

    async def _manifest(self, now_s: float) -> list[CompactionStatus]:
        out: list[CompactionStatus] = []
        if now_s - self._manifest_check_s >= self.manifest_interval_s:
            self._manifest_check_s = now_s
            try:
                res = await asyncio.to_thread(self._read_manifest)
            except Exception as exc:  # corrupt / unreadable: start over with the next MANIFEST
                log.warning("infolog: MANIFEST not usable for the compaction fallback: %s", exc)
                self._mf_name = None
                res = None
            if res is not None:
                (cf_names, dropped, new), removed, added, per_edit = res
                self._cf_names = dict(cf_names)
                self._cf_names.update(dropped)
                self._dropped = set(dropped)
                if per_edit:
                    for number, level, cf, size in removed:
                        if cf not in self._dropped:
                            self._pending.setdefault(number, (now_s, level, cf, size))
                    if self._pending:
                        for number, level, cf, size in added:
                            if level > 0 or number in self._pending:
                                self._pending_added[number] = (level, cf, size)
                else:
                    self._diff(self._files, new, now_s)
                self._files = new
                self._files_dirty = True
        if self._pending:
            out += self._report_pending(now_s)
        return out

    def _diff(self, old: dict[int, tuple[int, int, int]] | None, new: dict[int, tuple[int, int, int]], now_s: float) -> None:
        if old is None:
            return
        for num, (level, cf, size) in old.items():
            cur = new.get(num)
            if cur is None or cur[0] != level:
                if cf in self._dropped:
                    continue
                self._pending.setdefault(num, (now_s, level, cf, size))
        if self._pending:
            for num, meta in new.items():
                prev = old.get(num)
                if (prev is None and meta[0] > 0) or (prev is not None and prev[0] != meta[0]):
                    self._pending_added[num] = meta

    def _report_pending(self, now_s: float) -> list[CompactionStatus]:
        covered = self.tracker.covered
        for num in [n for n in self._pending if n in covered]:
            del self._pending[num]
        for num in [n for n in self._pending_added if n in covered]:
            del self._pending_added[num]
        if not self._pending:
            self._pending_added.clear()
            return []
        if any(now_s - seen < self.manifest_grace_s for seen, *_ in self._pending.values()):
            return []
        groups: dict[int, dict[str, Any]] = {}
        for num, (_seen, level, cf, size) in sorted(self._pending.items()):
            g = groups.setdefault(cf, {"inputs": {}, "bytes": 0})
            g["inputs"].setdefault(f"L{level}", []).append(num)
            g["bytes"] += size
        outs: dict[int, list[tuple[int, int, int]]] = {}
        for num, (level, cf, size) in sorted(self._pending_added.items()):
            if cf in groups:
                outs.setdefault(cf, []).append((num, level, size))
        events: list[CompactionStatus] = []
        now_ms = _now_ms()
        for cf, g in groups.items():
            o = outs.get(cf, [])
            details: dict[str, Any] = {
                "source": "manifest",
                "input_files": g["inputs"],
                "input_file_count": sum(len(v) for v in g["inputs"].values()),
                "input_bytes": g["bytes"],
                "output_files": [n for n, _, _ in o],
                "output_file_count": len(o),
                "output_bytes": sum(s for _, _, s in o),
            }
            levels = sorted({lv for _, lv, _ in o})
            if len(levels) == 1:
                details["output_level"] = levels[0]
            elif levels:
                details["output_levels"] = levels
            events.append(
                CompactionStatus(timestamp=now_ms, status="completed", cf=self._cf_names.get(cf, f"cf{cf}"), details=details)
            )
            self.tracker._cover([n for n, _, _ in o])
        self.tracker._cover(list(self._pending))
        self._pending.clear()
        self._pending_added.clear()
        self.stats["manifest_reports"] += len(events)
        return events


# =========================================================================== snapshots
