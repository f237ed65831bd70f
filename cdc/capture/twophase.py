"""TransactionDB two-phase commit: prepared sections held by xid until their Commit / Rollback.

:class:`PreparedSections` resolves the 2PC markers of one WAL record (BeginPrepare ..
EndPrepare(xid), Commit(xid), Rollback(xid)) into the data records to emit now.

Invariant: a prepared record is emitted exactly once, at its commit, never when rolled back;
WriteCommitted (per key) records get the numbers RocksDB gives them at the commit,
WritePrepared/Unprepared (per batch) ones keep the numbers they got at prepare time. The
unresolved sections are the checkpoint ``wal_2pc`` (``dirty`` says they changed since last
persisted), so a restart between prepare and commit loses nothing. Pure CPU (no I/O); runs in
the decode worker thread with the rest of event building.
"""

from __future__ import annotations

import logging
from typing import Any

from cdc.capture.build import KEY_OPS
from cdc.capture.checkpoint import encode_prepared
from cdc.format.wal import SEQ_PER_BATCH, Batch

__all__ = ["PreparedSections", "MAX_PREPARED"]

log = logging.getLogger("cdc.capture")

BEGIN_PREPARE = frozenset({"begin_prepare", "begin_persisted_prepare", "begin_unprepare"})
MAX_PREPARED = 10_000
"""Most unresolved transactions kept (commits we will never see: bound the memory)."""


class PreparedSections:
    """xid -> (numbering scheme of the prepare, its data records as ``wal.Op`` tuples)."""

    __slots__ = ("txns", "dirty", "unmatched_commits")

    def __init__(self, txns: dict[bytes | None, tuple[str, list[Any]]] | None = None) -> None:
        self.txns: dict[bytes | None, tuple[str, list[Any]]] = txns if txns is not None else {}
        self.dirty = False  # changed since last persisted (checkpoint wal_2pc)
        self.unmatched_commits = 0  # commits whose prepare was never seen (metric)

    def clear(self) -> None:
        """Forget every section (the store was replaced); the empty set is to be persisted."""
        self.txns.clear()
        self.dirty = True

    def take_checkpoint(self) -> bytes | None:
        """The ``wal_2pc`` checkpoint bytes when the sections changed since last taken, else None."""
        if not self.dirty:
            return None
        self.dirty = False
        return encode_prepared(self.txns)

    def resolve(self, b: Batch, scheme: str, ops: list[Any]) -> tuple[list[Any], int]:
        """Resolve 2PC (TransactionDB) sections in one record; (records to emit, extra numbers).

        Prepared data (BeginPrepare..EndPrepare(xid)) is held by xid and emitted when Commit(xid)
        arrives; a rollback drops it. WriteCommitted (per key): the prepared records consume no
        numbers when written; RocksDB inserts them at the commit, right after the commit record's
        own data records (reference §2), so they get those numbers (``extra`` of them), and the
        records of later writers merged into the same WAL record (a write group) come after them.
        WritePrepared/WriteUnprepared (per batch): they got their numbers at prepare time (the
        store's own, kept); WriteUnprepared may write several sections for one xid (all kept).
        A commit whose prepare capture never saw (it lies before capture's starting point)
        leaves a sequence jump in a per-key store: reported as a gap.
        """
        out: list[Any] = []
        extra = 0
        nxt = b.seq
        prepared = self.txns
        collecting: list[Any] | None = None
        for op in ops:
            s, name = op[0], op[1]
            if collecting is not None:
                if name == "end_prepare":
                    entry = prepared.get(op[3])
                    if entry is None or entry[0] != scheme:
                        prepared[op[3]] = (scheme, collecting)
                    else:
                        entry[1].extend(collecting)
                    self.dirty = True
                    if len(prepared) > MAX_PREPARED:
                        xid = next(iter(prepared))
                        prepared.pop(xid)
                        log.warning("more than 10000 unresolved prepared transactions: forgetting xid %r", xid)
                    collecting = None
                elif name in KEY_OPS:
                    collecting.append(op)
                continue
            if name in BEGIN_PREPARE:
                collecting = []
            elif s >= 0:
                if extra:
                    # a merged write group: a WriteCommitted commit earlier in this record had its
                    # prepared records inserted there, so the later writers' numbers come after them
                    s += extra
                    op = op._replace(seq=s)
                out.append(op)
                nxt = s + 1
            elif name == "commit" or name == "commit_with_ts":
                entry = prepared.pop(op[3], None)
                if entry is None:
                    log.warning(
                        "WAL %06d @%d: commit of transaction %r whose prepare capture never saw "
                        "(it precedes capture's starting point): its writes are not delivered",
                        b.log_number,
                        b.offset,
                        op[3],
                    )
                    self.unmatched_commits += 1
                else:
                    self.dirty = True
                    if entry[0] == SEQ_PER_BATCH:
                        out.extend(entry[1])
                    else:
                        for p in entry[1]:
                            out.append(p._replace(seq=nxt))
                            nxt += 1
                            extra += 1
            elif name == "rollback":
                if prepared.pop(op[3], None) is not None:
                    self.dirty = True
        return out, extra
