"""Operational event components: compaction / flush events from the info LOG, snapshot events.

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

``SnapshotWatcher`` (checkpoint ``"snapshots"``): see its docstring.
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
from cdc.model.events import CompactionStatus, SnapshotEvent
from cdc.format.infolog import CompactionJob, CompactionTracker, parse_log_bytes
from cdc.sources.store import open_readonly, read_store_file

log = logging.getLogger("cdc.ops")

__all__ = ["InfoLogWatcher", "SnapshotWatcher", "COMPONENTS"]

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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _count(ctx: Context, events: list[Any]) -> None:
    """Count emitted events in ``cdc_ops_events_total{type}``."""
    if not events:
        return
    by_type: dict[str, int] = {}
    for e in events:
        t = e.__struct_config__.tag
        by_type[t] = by_type.get(t, 0) + 1
    ctx.metrics.count_ops(by_type)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True when stop was set."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except TimeoutError:
        return False


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


class InfoLogWatcher:
    """Compaction / flush events from the store's info LOG (+ MANIFEST fallback)."""

    name = "infolog"
    poll_s = 0.1
    progress_interval_s = 0.25
    manifest_interval_s = 0.5
    manifest_grace_s = 11.0
    idle_checkpoint_s = 2.0

    def __init__(self, config: Config) -> None:
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
        self._mf_pos = 0
        self._mf_silent_until = -1
        self._mf_per_edit = False
        self._mf_reader: Any = None
        self._mf_state: Any = None
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
        self._locate_log()
        self._restore(ctx)
        try:
            while not ctx.stop.is_set():
                try:
                    await self._step(ctx)
                except Exception as exc:  # never die on a file's content
                    log.warning("infolog: %s: %s", type(exc).__name__, exc)
                if await _sleep_or_stop(ctx.stop, self.poll_s):
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
                _FilesCheckpoint(self._mf_name or "", self._mf_reader.offset if self._mf_reader else 0, self._files or {})
            )
            self._files_dirty = False
        if events or cps:
            self.stats["events"] += len(events)
            _count(ctx, events)
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
    def _read_manifest(self) -> tuple[Any, list[tuple[int, int, int, int]], list[tuple[int, int, int, int]], bool] | None:
        """Follow the MANIFEST named by CURRENT incrementally (runs in a worker thread).

        Returns None when nothing changed, else ``(state, removed, added, per_edit)``:
        ``removed`` / ``added`` are ``(number, level, cf_id, size)`` from each VersionEdit read
        past what was already accounted for (``per_edit`` True). When the MANIFEST is new to
        us and not the one of the checkpoint (store restarted while we were down), edits give
        no removals (``per_edit`` False) and the caller diffs the whole file set instead.
        """
        from cdc.format.blocks import LogReader
        from cdc.format.manifest import ManifestState, decode_version_edit

        try:
            current = read_store_file(os.path.join(self.db_dir, "CURRENT"), 256)
        except OSError:
            return None
        if not current.endswith(b"\n"):
            return None
        name = current.strip().decode("ascii", "replace")
        m = _MANIFEST_RE.match(name)
        if m is None:
            return None
        path = os.path.join(self.db_dir, name)
        try:
            fd = open_readonly(path)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            fresh = name != self._mf_name or size < self._mf_pos
            if fresh:
                self._mf_name = name
                self._mf_state = ManifestState()
                self._mf_reader = LogReader(int(m.group(1)), leveldb=self._leveldb)
                self._mf_pos = 0
                self._mf_silent_until = self._cp_offset if name == self._cp_manifest else -1
                self._mf_per_edit = name == self._cp_manifest
            elif size == self._mf_pos:
                return None
            reader, state = self._mf_reader, self._mf_state
            removed: list[tuple[int, int, int, int]] = []
            added: list[tuple[int, int, int, int]] = []
            while self._mf_pos < size:
                chunk = os.pread(fd, min(_MAX_READ, size - self._mf_pos), self._mf_pos)
                if not chunk:
                    break
                self._mf_pos += len(chunk)
                reader.feed(chunk)
                for rec in reader.read():
                    edit = decode_version_edit(rec.payload)
                    if self._mf_per_edit and rec.offset >= self._mf_silent_until:
                        files = state.files
                        for level, number in edit.deleted_files:
                            meta = files.get(number)
                            removed.append((number, level, edit.cf_id, meta.size if meta is not None else 0))
                        for level, number, fsize, *_rest in edit.new_files:
                            added.append((number, level, edit.cf_id, fsize))
                    state.apply(edit)
                if reader.state == "corrupt":
                    raise ValueError(f"{name}: {reader.error}")
            per_edit = self._mf_per_edit
            self._mf_per_edit = True  # from now on this MANIFEST is followed edit by edit
            self._mf_silent_until = -1
            return state, removed, added, per_edit
        finally:
            os.close(fd)

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
                state, removed, added, per_edit = res
                self._cf_names = dict(state.cf_names)
                self._cf_names.update(state.dropped_cfs)
                self._dropped = set(state.dropped_cfs)
                new = {n: (f.level, f.cf_id, f.size) for n, f in state.files.items()}
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

_BACKUP_ID_RE = re.compile(r"^(\d+)(\.tmp)?$")
_META_TMP_RE = re.compile(r"^\.(\d+)\.tmp$")


class _Snap(msgspec.Struct):
    """What the watcher knows about one snapshot (persisted in the ``"snapshots"`` checkpoint)."""

    status: str  # last status reported: started | completed | failed | deleted
    kind: str  # checkpoint | backup
    sig: tuple[int, int] = (0, 0)  # (bytes, files) at the last change
    changed_s: float = 0.0  # monotonic time of the last change (not persisted meaningfully)


_snap_enc = msgspec.msgpack.Encoder()
_snap_dec = msgspec.msgpack.Decoder(dict[str, _Snap])


def _dir_usage(path: str) -> tuple[int, int]:
    """(bytes, files) under ``path`` (recursive; vanishing files skipped)."""
    total = count = 0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                            count += 1
                    except OSError:
                        continue
        except OSError:
            continue
    return total, count


def _checkpoint_state(path: str) -> tuple[bool, dict[str, Any]]:
    """Is the checkpoint dir complete and consistent? Returns (complete, details).

    Complete: CURRENT names a MANIFEST that exists and decodes, and every SST the MANIFEST
    lists is present (``.sst`` or ``.ldb``).
    """
    from cdc.format.manifest import decode_manifest

    try:
        current = read_store_file(os.path.join(path, "CURRENT"), 256)
    except OSError:
        return False, {"missing": "CURRENT"}
    if not current.endswith(b"\n"):
        return False, {"missing": "CURRENT (partial)"}
    name = current.strip().decode("ascii", "replace")
    try:
        data = read_store_file(os.path.join(path, name))
    except OSError:
        return False, {"missing": name}
    try:
        state = decode_manifest(data, strict_tail=True)
    except Exception as exc:
        return False, {"manifest_error": str(exc)}
    names = set()
    with contextlib.suppress(OSError):
        names = set(os.listdir(path))
    missing = [n for n in state.files if f"{n:06d}.sst" not in names and f"{n:06d}.ldb" not in names]
    if missing:
        return False, {"missing_files": missing[:20]}
    return True, {
        "manifest": name,
        "sequence": state.last_sequence,
        "sst_files": len(state.files),
        "column_families": sorted(state.cf_names.values()),
    }


def _parse_backup_meta(data: bytes) -> tuple[dict[str, Any], list[str]] | None:
    """Parse a BackupEngine ``meta/<id>`` file -> (details, listed relative paths), None if cut."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None
    i = 0
    info: dict[str, Any] = {}
    if i < len(lines) and lines[i].startswith("schema_version "):
        info["schema_version"] = lines[i].split(" ", 1)[1]
        i += 1
    try:
        info["backup_time"] = int(lines[i])
        info["sequence"] = int(lines[i + 1])
        i += 2
        if i < len(lines) and lines[i].startswith("metadata "):
            info["app_metadata"] = lines[i].split(" ", 1)[1]
            i += 1
        n = int(lines[i])
        i += 1
    except (IndexError, ValueError):
        return None
    files = [ln.split(" ", 1)[0] for ln in lines[i : i + n] if ln.strip()]
    if len(files) != n:
        return None
    return info, files


class SnapshotWatcher:
    """``snapshot_event``s for RocksDB checkpoints and BackupEngine backups in ``--snapshots-dir``.

    Layouts recognised (reference §7):

    - checkpoint: a directory ``<name>`` built as ``<name>.tmp`` then renamed; complete when
      CURRENT -> MANIFEST exists and every SST it lists is present.
    - BackupEngine: ``snapshots_dir`` itself or any direct subdirectory holding ``meta/`` and
      ``private/``; backup ``<id>`` is building while ``private/<id>.tmp`` or ``meta/.<id>.tmp``
      exists, complete once ``meta/<id>`` parses and every file it lists exists. Names:
      ``backup-<id>`` (root) or ``<subdir>/backup-<id>``.

    Transitions (each reported once per name): appears -> ``started``; complete ->
    ``completed`` (a snapshot first seen complete while running gets ``started`` and
    ``completed``; one found complete at the very first start-up only ``completed`` with
    ``details.discovered = true``); a building one that disappears without completing, or does
    not change for ``stale_s`` -> ``failed`` with the reason; a completed one removed ->
    ``deleted``. Details: ``path``, ``kind``, ``bytes``, ``files`` and what the metadata says
    (sequence, manifest, backup_time). Known state is checkpointed (``"snapshots"``) so a restart
    reports only what changed while the daemon was down.
    """

    name = "snapshots"
    poll_s = 0.2
    stale_s = 300.0

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root: str | None = config.snapshots_dir
        self.known: dict[str, _Snap] = {}
        self._first_start = True
        self.scans = 0  # passes over the snapshots dir so far

    async def run(self, ctx: Context) -> None:
        if not self.root:
            return
        raw = ctx.journal.get_checkpoint("snapshots")
        if raw:
            try:
                self.known = dict(_snap_dec.decode(raw))
                self._first_start = False
            except msgspec.DecodeError:
                self.known = {}
        now = time.monotonic()
        for s in self.known.values():
            s.changed_s = now
        while not ctx.stop.is_set():
            try:
                events = await asyncio.to_thread(self.scan, time.monotonic())
                if events or self._first_start:
                    _count(ctx, events)
                    await ctx.bus.emit(events, checkpoints={"snapshots": self._checkpoint()})
                self._first_start = False
            except Exception as exc:
                log.warning("snapshots: %s: %s", type(exc).__name__, exc)
            if await _sleep_or_stop(ctx.stop, self.poll_s):
                break

    def _checkpoint(self) -> bytes:
        keep = {k: v for k, v in self.known.items() if v.status != "deleted"}
        return _snap_enc.encode(keep)

    # ------------------------------------------------------------------ scan (thread)
    def scan(self, now_s: float) -> list[SnapshotEvent]:
        """One pass over the snapshots dir; returns the events of the transitions seen."""
        root = self.root
        assert root is not None
        self.scans += 1
        found: dict[str, tuple[str, str, bool, dict[str, Any]]] = {}  # name -> (kind, path, complete, info)
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            # the snapshots dir itself is missing / unreadable (unmounted?): no verdicts now,
            # and certainly not "deleted" for everything known
            return []
        if self._is_backup_root(root):
            self._scan_backups(root, "", found)
        for e in entries:
            try:
                if not e.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            if e.name.startswith(".") or e.name == "lost+found":
                continue
            if self._is_backup_root(e.path):
                self._scan_backups(e.path, e.name + "/", found)
                continue
            if e.name in ("meta", "private", "shared_checksum", "shared") and self._is_backup_root(root):
                continue
            name = e.name[:-4] if e.name.endswith(".tmp") else e.name
            if e.name.endswith(".tmp"):
                if name not in found:
                    found[name] = ("checkpoint", e.path, False, {"building": True})
                continue
            known = self.known.get(name)
            if known is not None and known.status == "completed":
                found[name] = ("checkpoint", e.path, True, {})  # no re-check each poll
                continue
            complete, info = _checkpoint_state(e.path)
            found[name] = ("checkpoint", e.path, complete, info)
        return self._transitions(found, now_s)

    @staticmethod
    def _is_backup_root(path: str) -> bool:
        return os.path.isdir(os.path.join(path, "meta")) and os.path.isdir(os.path.join(path, "private"))

    def _scan_backups(self, broot: str, prefix: str, found: dict[str, tuple[str, str, bool, dict[str, Any]]]) -> None:
        ids: dict[int, bool] = {}  # id -> has building markers
        try:
            for n in os.listdir(os.path.join(broot, "private")):
                m = _BACKUP_ID_RE.match(n)
                if m:
                    ids[int(m.group(1))] = ids.get(int(m.group(1)), False) or bool(m.group(2))
        except OSError:
            pass
        metas: set[int] = set()
        try:
            for n in os.listdir(os.path.join(broot, "meta")):
                if n.isdigit():
                    metas.add(int(n))
                    ids.setdefault(int(n), False)
                else:
                    m = _META_TMP_RE.match(n)
                    if m:
                        ids[int(m.group(1))] = True
        except OSError:
            pass
        for bid, building in sorted(ids.items()):
            name = f"{prefix}backup-{bid}"
            path = os.path.join(broot, "private", str(bid))
            known = self.known.get(name)
            if bid in metas and not building and known is not None and known.status == "completed":
                found[name] = ("backup", path, True, {})
                continue
            if bid not in metas:
                found[name] = ("backup", path + (".tmp" if building else ""), False, {"building": True, "backup_id": bid})
                continue
            try:
                parsed = _parse_backup_meta(read_store_file(os.path.join(broot, "meta", str(bid))))
            except OSError:
                parsed = None
            if parsed is None:
                found[name] = ("backup", path, False, {"backup_id": bid, "meta": "incomplete"})
                continue
            info, files = parsed
            size = 0
            missing = []
            for rel in files:
                try:
                    size += os.stat(os.path.join(broot, rel)).st_size
                except OSError:
                    missing.append(rel)
            info.update({"backup_id": bid, "bytes": size, "files": len(files), "backup_dir": broot})
            if missing:
                info["missing_files"] = missing[:20]
            found[name] = ("backup", path, not missing and not building, info)

    def _transitions(self, found: dict[str, tuple[str, str, bool, dict[str, Any]]], now_s: float) -> list[SnapshotEvent]:
        events: list[SnapshotEvent] = []
        now_ms = _now_ms()

        def ev(status: str, name: str, details: dict[str, Any]) -> None:
            events.append(SnapshotEvent(timestamp=now_ms, status=status, name=name, details=details))

        for name, (kind, path, complete, info) in found.items():
            snap = self.known.get(name)
            if snap is not None and snap.status in ("completed",) and complete:
                continue
            if kind == "checkpoint" or "bytes" not in info:
                size, count = _dir_usage(path)
            else:
                size, count = info["bytes"], info["files"]
            details = {"kind": kind, "path": path, "bytes": size, "files": count}
            details.update({k: v for k, v in info.items() if k not in ("bytes", "files")})
            if snap is not None and snap.status == "failed":
                if complete:  # finished after all (e.g. a slow copy we called stale)
                    ev("completed", name, details)
                    snap.status = "completed"
                    snap.sig = (size, count)
                continue
            if snap is None or snap.status == "deleted":
                if complete and self._first_start:
                    details["discovered"] = True
                    ev("completed", name, details)
                    self.known[name] = _Snap("completed", kind, (size, count), now_s)
                    continue
                ev("started", name, details)
                snap = self.known[name] = _Snap("started", kind, (size, count), now_s)
                if not complete:
                    continue
            # snap.status == "started"
            if complete:
                ev("completed", name, details)
                snap.status = "completed"
                snap.sig = (size, count)
                snap.changed_s = now_s
                continue
            if (size, count) != snap.sig:
                snap.sig = (size, count)
                snap.changed_s = now_s
            elif now_s - snap.changed_s >= self.stale_s:
                details["reason"] = f"stale: no progress for {int(now_s - snap.changed_s)} s"
                ev("failed", name, details)
                snap.status = "failed"
        for name in [n for n in self.known if n not in found]:
            snap = self.known.pop(name)
            details = {"kind": snap.kind, "bytes": snap.sig[0], "files": snap.sig[1]}
            if snap.status == "completed":
                ev("deleted", name, details)
            elif snap.status == "started":
                details["reason"] = "abandoned: removed before it was complete"
                ev("failed", name, details)
        return events


COMPONENTS: tuple[type, ...] = (InfoLogWatcher, SnapshotWatcher)
"""Components the app runs: each built as ``Cls(ctx.config)``, run with ``await comp.run(ctx)``."""
