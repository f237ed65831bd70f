"""Snapshot events: checkpoints and backups of the store appearing, completing, going away.

``SnapshotWatcher`` (checkpoint ``"snapshots"``): see its docstring.

Invariant: every snapshot transition is emitted once across restarts (known state is
checkpointed with the events); a snapshot is ``complete`` only when its files prove it.
Read-only on the snapshot directories.
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
from cdc.model.events import SnapshotEvent
from cdc.ops.common import count_events, sleep_or_stop
from cdc.ops.common import now_ms as _now_ms
from cdc.sources.store import read_store_file

log = logging.getLogger("cdc.ops")

__all__ = ["SnapshotWatcher"]

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
                    count_events(ctx, events)
                    await ctx.bus.emit(events, checkpoints={"snapshots": self._checkpoint()})
                self._first_start = False
            except Exception as exc:
                log.warning("snapshots: %s: %s", type(exc).__name__, exc)
            if await sleep_or_stop(ctx.stop, self.poll_s):
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
