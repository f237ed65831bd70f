"""``cdc dump-wal PATH [--values]``: decode WAL files offline and print NDJSON (I/O ring).

Output: one JSON object per WriteBatch record, in file order (WAL files oldest first, the
``archive/`` directory included)::

    {"seq": 7, "op": "put", "cf": "users", "key": "k1", "wal": 12, "offset": 4096,
     "value": "v1"}

* ``seq`` is the record's own sequence number, as the store numbers it: per record (plain DB,
  WriteCommitted TransactionDB) or per (sub-)batch (WRITE_PREPARED / WRITE_UNPREPARED, detected
  record by record, see :class:`cdc.wal.SeqNumbering`). Markers consume no sequence number; they
  show the sequence number of their position (the next one to be used). WriteCommitted prepared
  records are printed where they were prepared, with their position's number: the store numbers
  them at the commit, ``commit.seq``, ``commit.seq + 1``, ... in order (the commit line's seq).
* ``op``: put, delete, single_delete, merge, delete_range, put_entity, blob_index, timed_put,
  log_data (``key`` holds the blob), begin_prepare, begin_persisted_prepare, begin_unprepare,
  end_prepare / commit / rollback (``key`` holds the xid), commit_with_ts (``value`` holds the
  commit timestamp), noop (``key`` is "").
* ``cf`` is the column family *name* from the MANIFEST named by CURRENT in the DB directory
  (for a lone WAL file: in its directory, or the parent of an ``archive/`` directory). Without a
  MANIFEST, id 0 is ``"default"`` and other ids are ``"cf<id>"``.
* Bytes that are valid UTF-8 are printed as strings, anything else as base64 with a sibling
  ``key_encoding`` / ``end_key_encoding`` / ``value_encoding`` = ``"base64"`` (CONTRACT.md §3).
* ``wal`` is the WAL number and ``offset`` the file offset of the record's WriteBatch.
* ``ts`` appears for user-defined-timestamp column families (and timed_put's write time),
  encoded like keys.
* With ``--values``, ``put_entity`` prints ``columns``: ``[{"name": .., "value": ..}]`` (each
  with its own ``*_encoding`` when not UTF-8) instead of the serialized entity.

Exit codes: 0 all good; 1 a file was corrupt or truncated (the records before the bad spot are
printed, then one line on stderr, e.g. ``cdc: 000012.log @0x8000: checksum mismatch``); 2 the
path is missing or not a WAL file / store. A torn last record (cut short, or bad in the file's
last block) followed by a WAL whose first record continues at the next sequence number is a
writer crash, not damage: a ``note:`` line, exit 0.

``--db DIR``: the DB directory (CURRENT/MANIFEST) for column family names when PATH is (in) a
separate ``wal_dir``.

A live store: when PATH is a DB directory, its newest WAL is the one the store is writing, and
an incomplete record at its very end is a write in progress, not damage. It is left out, one
note goes to stderr (``cdc: note: 000012.log @0x1f40: incomplete last record (being written);
not printed``) and the exit code stays 0. A truncated *older* WAL of a directory, or a
truncated single file given as PATH, still exits 1 (``truncated record``).
"""

from __future__ import annotations

import base64
import gc
import os
import re
import struct
import sys
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from crc32c import crc32c

from cdc.errors import CdcError, FormatError, StoreError
from cdc.format.blocks import LogReader
from cdc.format.manifest import ManifestState
from cdc.sources.store import detect_store, list_wal_files, load_manifest
from cdc.format.wal import (
    SEQ_PER_BATCH,
    SEQ_PER_KEY,
    Batch,
    SeqNumbering,
    WalReader,
    _decode_batch,
    decode_entity,
    seq_scheme_evidence,
)

_READ_CHUNK = 1 << 18  # small pieces keep the live objects (and page faults) few
_FLUSH_BYTES = 1 << 20
_WAL_NAME = re.compile(r"^(\d+)\.log$")


def _make_record_type() -> type:
    """The msgspec Struct of one line, built on first use: a keys-only dump whose records all
    take the fast path never imports msgspec (start-up time)."""
    import msgspec

    class DumpRecord(msgspec.Struct, omit_defaults=True):
        """One NDJSON line of ``cdc dump-wal`` (field order = output order)."""

        seq: int
        op: str
        cf: str
        key: str
        wal: int
        offset: int
        key_encoding: str | None = None
        end_key: str | None = None
        end_key_encoding: str | None = None
        value: str | None = None
        value_encoding: str | None = None
        ts: str | None = None
        ts_encoding: str | None = None
        columns: list[dict[str, str]] | None = None

    return DumpRecord


_record_type: Any = None


def _record_cls() -> Any:
    global _record_type
    if _record_type is None:
        _record_type = _make_record_type()
    return _record_type


def __getattr__(name: str) -> Any:
    if name == "DumpRecord":
        return _record_cls()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _json_str(text: str) -> bytes:
    """``text`` as a JSON string, exactly as msgspec encodes it."""
    raw = text.encode()
    if _json_safe(raw):
        return b'"' + raw + b'"'
    import msgspec

    return msgspec.json.encode(text)


_b64 = base64.b64encode
_DATA_NAMES = frozenset(
    {"put", "delete", "single_delete", "merge", "delete_range", "put_entity", "blob_index", "timed_put"}
)


def _text(data: bytes, what: str, into: dict[str, str]) -> None:
    try:
        into[what] = data.decode()
    except UnicodeDecodeError:
        into[what] = _b64(data).decode()
        into[what + "_encoding"] = "base64"


def _columns(entity: bytes) -> list[dict[str, str]] | None:
    """Wide columns as [{"name", "value"}] (None if the entity does not decode: raw value)."""
    try:
        cols = decode_entity(entity)
    except FormatError:
        return None
    out = []
    for name, value in cols:
        d: dict[str, str] = {}
        _text(name, "name", d)
        _text(value, "value", d)
        out.append(d)
    return out


class _Names(dict[int, str]):
    """cf id -> name; ids the MANIFEST never named become "default" (0) / "cf<id>"."""

    def __missing__(self, cf_id: int) -> str:
        name = "default" if cf_id == 0 else f"cf{cf_id}"
        self[cf_id] = name
        return name


class _Formatter:
    """Turns batches into NDJSON bytes (one reused msgspec encoder).

    Hot path: batches whose records all consume a sequence number and have UTF-8 keys (and
    values), no end key and no timestamp go through a tight loop; anything else through
    :meth:`_general`, which produces the same shape for every op.
    """

    def __init__(self, names: dict[int, str], values: bool) -> None:
        self.names = _Names(names)
        self.values = values
        self.encoder: Any = None  # a msgspec.json.Encoder, made on first use
        self.numbering = SeqNumbering()  # per-key / per-batch numbering (see cdc.wal)
        self.last_seq = -1  # last sequence number consumed so far (next record: last_seq + 1)
        self._wc_prepared: dict[bytes | None, int] = {}  # WriteCommitted xid -> prepared records

    def _renumber(self, b: Batch) -> list[Any]:
        """The records of a multi-record batch with the store's numbers; tracks ``last_seq``."""
        scheme, ops, consumed = self.numbering.number(b)
        if scheme == SEQ_PER_KEY and len(ops) != b.count:
            # WriteCommitted 2PC: prepared records are numbered when their commit is inserted
            # (and the records of later writers in the same write group come after them).
            # Markers and prepared records get their position's number explicitly; a commit's
            # is the first number of its prepared records.
            n = 0
            shift = 0
            pos = b.seq
            shifted = []
            for op in ops:
                s, name = op[0], op[1]
                if s >= 0:
                    if shift:
                        s += shift
                        op = op._replace(seq=s)
                    pos = s + 1
                    shifted.append(op)
                    continue
                if name in _DATA_NAMES:
                    n += 1
                elif name == "end_prepare":
                    self._wc_prepared[op[3]] = n
                    n = 0
                elif name in ("commit", "commit_with_ts"):
                    k = self._wc_prepared.pop(op[3], 0)
                    shifted.append(op._replace(seq=pos))
                    pos += k
                    shift += k
                    continue
                elif name == "rollback":
                    self._wc_prepared.pop(op[3], None)
                shifted.append(op._replace(seq=pos))
            ops = shifted
            consumed += shift
        if consumed:
            self.last_seq = b.seq + consumed - 1
        return ops

    def records(self, batches: Iterable[Batch]) -> list[Any]:
        out: list[Any] = []
        append = out.append
        names = self.names
        values = self.values
        rec = _record_cls()
        general = self._general
        for b in batches:
            wal, off, bseq, _count, ops = b
            if len(ops) == 1 and ops[0][0] >= 0:
                self.last_seq = ops[0][0]  # one data record: the same number in both schemes
            elif len(ops) == _count and ops and self.numbering.scheme != SEQ_PER_BATCH:
                self.last_seq = bseq + _count - 1  # data records only: per key (see cdc.wal)
                self.numbering.scheme = SEQ_PER_KEY
            elif ops:
                ops = self._renumber(b)
            if len(ops) == 1:
                # single-record batch (the most common WAL record)
                op = ops[0]
                seq, name, cf_id, key, value, end_key, ts = op
                if seq >= 0 and key is not None and end_key is None and ts is None and name != "put_entity":
                    try:
                        if values and value is not None:
                            append(
                                rec(
                                    seq, name, names[cf_id], key.decode(), wal, off,
                                    None, None, None, value.decode(),
                                )
                            )
                        else:
                            append(rec(seq, name, names[cf_id], key.decode(), wal, off))
                        continue
                    except UnicodeDecodeError:
                        pass
                general(wal, off, bseq, ops, out)
                continue
            if not ops:
                continue
            first = ops[0][0]
            if first < 0 or len(ops) != _count or ops[-1][0] - first + 1 != len(ops):
                # markers or prepared records (seq -1) somewhere in the batch, or per-batch numbers
                general(wal, off, bseq, ops, out)
                continue
            if values:
                for op in ops:
                    seq, name, cf_id, key, value, end_key, ts = op
                    if end_key is None and ts is None and name != "put_entity":
                        try:
                            if value is None:
                                append(rec(seq, name, names[cf_id], key.decode(), wal, off))
                            else:
                                append(
                                    rec(
                                        seq, name, names[cf_id], key.decode(), wal, off,
                                        None, None, None, value.decode(),
                                    )
                                )
                            continue
                        except UnicodeDecodeError:
                            pass
                    general(wal, off, seq, (op,), out)
            else:
                for op in ops:
                    seq, name, cf_id, key, value, end_key, ts = op
                    if end_key is None and ts is None:
                        try:
                            append(rec(seq, name, names[cf_id], key.decode(), wal, off))
                            continue
                        except UnicodeDecodeError:
                            pass
                    general(wal, off, seq, (op,), out)
        return out

    def _general(
        self, wal: int, off: int, pos_seq: int, ops: Iterable[tuple], out: list[Any]
    ) -> None:
        names = self.names
        values = self.values
        rec = _record_cls()
        for seq, name, cf_id, key, value, end_key, ts in ops:
            if seq < 0:
                seq = pos_seq  # consumes none: show the position's sequence number
            else:
                pos_seq = seq + 1
            d: dict[str, str] = {}
            if key is not None:
                _text(key, "key", d)
            r = rec(seq, name, names[cf_id], d.get("key", ""), wal, off, d.get("key_encoding"))
            if end_key is not None:
                d = {}
                _text(end_key, "end_key", d)
                r.end_key = d["end_key"]
                r.end_key_encoding = d.get("end_key_encoding")
            if values and value is not None and name == "put_entity":
                r.columns = _columns(value)
                if r.columns is not None:
                    value = None
            if values and value is not None:
                d = {}
                _text(value, "value", d)
                r.value = d["value"]
                r.value_encoding = d.get("value_encoding")
            if ts is not None:
                d = {}
                _text(ts, "ts", d)
                r.ts = d["ts"]
                r.ts_encoding = d.get("ts_encoding")
            out.append(r)

    def encode(self, batches: Iterable[Batch]) -> bytes:
        if self.encoder is None:
            import msgspec

            self.encoder = msgspec.json.Encoder()
        return self.encoder.encode_lines(self.records(batches))

    def encode_mixed(self, items: list[Any]) -> bytes:
        """Like :meth:`encode` for a list that also holds pre-rendered lines (bytes), in order."""
        parts: list[bytes] = []
        run: list[Batch] = []
        for item in items:
            if type(item) is bytes:
                if run:
                    parts.append(self.encode(run))
                    run = []
                parts.append(item)
                # pre-rendered single-Put lines (same numbers in both schemes): note the last seq
                at = item.rfind(b'{"seq":', 0, len(item) - 1) + 7
                self.last_seq = int(item[at : item.index(b",", at)])
            else:
                run.append(item)
        if run:
            parts.append(self.encode(run))
        return parts[0] if len(parts) == 1 else b"".join(parts)


# ---------------------------------------------------------------------------- keys-only fast path
#
# Without --values a line is {"seq":S,"op":"put","cf":C,"key":K,"wal":W,"offset":O}. The common
# WAL is made of *uniform runs*: WriteBatches whose records are all default-CF Puts with the same
# key and value lengths (bulk loads), or consecutive single-Put records of one length (one write
# per call). Such a run is recognised with one regular expression (C speed, no per-record Python
# loop), its CRCs are verified in bulk, and its lines are built by interleaving lists of bytes.
# Anything else -- other ops or CFs, varying lengths, keys that are not plain ASCII without
# characters JSON escapes, a CRC or length problem -- goes through the general decoder and
# formatter, so the output stays byte-identical to theirs (differential tests).

_JSON_UNSAFE = bytes(c for c in range(256) if c < 0x20 or c in (0x22, 0x5C) or c >= 0x80)
"""Bytes a key may not contain to be printed verbatim between quotes (msgspec's output)."""


def _json_safe(keys: bytes) -> bool:
    """True when ``keys`` holds only printable ASCII other than ``"`` and ``\\``."""
    return len(keys.translate(None, _JSON_UNSAFE)) == len(keys)
_MIN_RUN = 8
_FUSED = struct.Struct("<IHBQIB")  # log header + WriteBatch header + first tag
_SEP = b"\x00"


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _lane_masks(n: int, cache: dict[int, tuple[int, int, int, int]] = {}) -> tuple[int, int, int, int]:  # noqa: B006
    m = cache.get(n)
    if m is None:
        m = cache[n] = tuple(  # type: ignore[assignment]
            int.from_bytes(struct.pack("<Q", c) * n, "little") for c in (0x1FFFF, 0xFFFE0000, 0xA282EAD8, 0xFFFFFFFF)
        )
        if len(cache) > 4096:
            cache.clear()
    return m  # type: ignore[return-value]


def _crcs_ok(stored: bytes | bytearray, bodies: Sequence[bytes]) -> bool:
    """True when every masked CRC in ``stored`` (64-bit lanes) matches its body's CRC32C.

    Done on one big integer with a 64-bit lane per record: mask(c) = rot15(c) + delta, per lane,
    without a Python-level loop over the records.
    """
    n = len(bodies)
    x = int.from_bytes(struct.pack(f"<{n}Q", *map(crc32c, bodies)), "little")
    m_lo, m_hi, delta, m32 = _lane_masks(n)
    masked = ((((x >> 15) & m_lo) | ((x << 17) & m_hi)) + delta) & m32
    return masked == int.from_bytes(stored, "little")


def _record_pattern(length: int, k: int, v: int, groups: bool) -> bytes:
    """A legacy FULL record holding a one-Put default-CF WriteBatch with these lengths.

    With ``groups``: (type+payload = the CRC's input, key)."""
    g = b"(" if groups else b"(?:"
    return (
        b".{4}" + re.escape(struct.pack("<H", length))
        + g + b"\x01.{8}\x01\x00\x00\x00\x01" + re.escape(bytes([k]))
        + g + b".{%d})" % k + re.escape(bytes([v])) + b".{%d})" % v
    )


def _lanes(region: bytes, stride: int, first: int, width: int) -> bytearray:
    """The ``width``-byte field at ``first`` of each ``stride``-byte record of ``region``, each
    zero-extended to 8 bytes (64-bit little-endian lanes), built with C-level slicing."""
    n = len(region) // stride
    lanes = bytearray(8 * n)
    for c in range(width):
        lanes[c::8] = region[first + c :: stride]
    return lanes


class _KeysOnly:
    """Renders uniform runs for ``dump-wal`` without ``--values`` (see above); with the
    optional C renderer (``fast``), every run of default-CF Put records with printable keys,
    with ``--values`` too (printable values)."""

    def __init__(self, cf_default: str, wal: int, fast: Any = None, values: bool = False) -> None:
        self.fast = fast
        """The C renderer (cdc.cli._dumpfast) when built and allowed, else None."""
        self.values = values
        """Lines with values (``--values``): only the C renderer does those (``fast`` is set)."""
        cf = _json_str(cf_default).replace(b"%", b"%%")
        self.line = b'{"seq":%d,"op":"put","cf":' + cf + b',"key":"%s","wal":' + b"%d" % wal + b',"offset":%d}\n'
        self.head = b'{"seq":'
        self.mid = b',"op":"put","cf":' + _json_str(cf_default) + b',"key":"'
        self.tail = b'","wal":%d,"offset":' % wal
        self._fixed: dict[tuple[int, int], bytes] = {}
        # the same with the offset filled in by a first %-format (%% survives it as %)
        self.line_at = self.line.replace(b"%", b"%%").replace(b'"offset":%%d}', b'"offset":%d}')
        self._templates: dict[int, bytes] = {}
        self.rendered = 0
        """How many times pre-rendered lines were returned (the caller then expects bytes items)."""
        self.multi = False
        """Multi-Put batches may be rendered (numbered per key): set with ``batch_decoder``."""
        self._batch_rx: dict[tuple[int, int], re.Pattern[bytes]] = {}
        self._rec_rx: dict[tuple[int, int, int], tuple[re.Pattern[bytes], re.Pattern[bytes]]] = {}

    def _lines(self, seqs: Iterable[int], keys: list[bytes], offsets: Iterable[int]) -> bytes:
        """n lines with one bytes %-format call on a template of n lines (C speed)."""
        n = len(keys)
        tpl = self._templates.get(n)
        if tpl is None:
            tpl = self.line * n
            if n <= 4096:  # long runs are rare sizes: not worth keeping
                if len(self._templates) > 32:
                    self._templates.clear()
                self._templates[n] = tpl
        args: list[Any] = [None] * (3 * n)
        args[0::3] = seqs
        args[1::3] = keys
        args[2::3] = offsets
        return tpl % tuple(args)

    # -- one WriteBatch of n Puts with equal key and value lengths (bulk loads)

    def batch(self, payload: bytes, log_number: int, offset: int, leveldb: bool) -> Any:
        """``WalReader.batch_decoder``: rendered lines, or the general decoder's Batch.

        Renders per key only while the records so far are not numbered per batch: the first
        decoded record that says "per batch" (a WritePrepared/Unprepared marker, or data closed
        by a Noop) turns the multi-Put rendering off for the rest of the WAL (``multi``), so that
        the formatter numbers what follows, as without this fast path.
        """
        if self.multi and not leveldb:
            fast = self.fast
            if fast is not None:
                # C: any batch of default-CF Puts with printable keys (a superset of the below)
                lines = fast.batch(payload, offset, self.mid, self.tail, self.values)
                if lines is not None:
                    self.rendered += 1
                    return lines
            else:
                n = len(payload)
                if n >= 15 and payload[8:13] == b"\x01\x00\x00\x00\x01":
                    # one Put (a record split across reads: its fragments were joined)
                    k = payload[13]
                    if k < 0x80 and 15 + k <= n:
                        v = payload[14 + k]
                        vs = 15 + k
                        if v >= 0x80:
                            if vs < n and payload[vs] < 0x80:
                                v = (v & 0x7F) | (payload[vs] << 7)
                                vs += 1
                            else:
                                v = -1  # a longer varint: the general decoder
                        key = payload[14 : 14 + k]
                        if v >= 0 and vs + v == n and _json_safe(key):
                            self.rendered += 1
                            return self.line % (int.from_bytes(payload[:8], "little"), key, offset)
                elif n > 16 and payload[12] == 1:
                    count = int.from_bytes(payload[8:12], "little")
                    k = payload[13]
                    if count >= _MIN_RUN and k < 0x80 and 14 + k < n:
                        v = payload[14 + k]
                        if v >= 0x80 and 15 + k < n:
                            v = (v & 0x7F) | (payload[15 + k] << 7)
                        vb = _varint_bytes(v)
                        stride = 2 + k + len(vb) + v
                        if n == 12 + count * stride:
                            rx = self._batch_rx.get((k, v))
                            if rx is None:
                                rx = re.compile(
                                    b"\x01" + re.escape(bytes([k])) + b"(.{%d})" % k + re.escape(vb) + b".{%d}" % v, re.S
                                )
                                self._batch_rx[(k, v)] = rx
                            keys = rx.findall(payload, 12)
                            # count non-overlapping matches of `stride` bytes in count*stride bytes tile them
                            if len(keys) == count and _json_safe(b"".join(keys)):
                                seq0 = int.from_bytes(payload[:8], "little")
                                args: list[Any] = [None] * (2 * count)
                                args[0::2] = range(seq0, seq0 + count)
                                args[1::2] = keys
                                self.rendered += 1
                                return (self.line_at % offset * count) % tuple(args)
        b = _decode_batch(payload, log_number, offset, leveldb)
        if len(b.ops) != b.count and self.multi and seq_scheme_evidence(b)[0] == SEQ_PER_BATCH:
            self.multi = False  # markers (not counted) in the record: numbered per batch?
        return b

    # -- consecutive unfragmented single-Put records of one length (one write per call)

    def records(self, log: LogReader) -> list[Any]:
        """``WalReader.run_scanner``: the uniform runs at the reader's position, rendered.

        A run continues across blocks: a block's trailer (skipped only when bytes beyond it are
        there, as LogReader does) and a single-Put record split into FIRST + LAST fragments at
        the block boundary are taken too. It stops before anything else, which the general path
        then handles (and reports) exactly as without this scanner.
        """
        buf, base, i = log.window()
        if self.fast is not None:
            # C: every accepted record (a superset of the runs below: any lengths, fragments,
            # multi-Put batches when numbered per key); it stops where this code would stop
            lines, end, count = self.fast.scan(buf, base, i, self.mid, self.tail, self.multi, self.values)
            if not count:
                return []
            log.consume(base + end)
            self.rendered += 1
            return [lines]
        nbuf = len(buf)
        done = i
        parts: list[bytes] = []
        while True:
            blk_end = i + 32768 - (base + i) % 32768
            lim = blk_end if blk_end < nbuf else nbuf
            end = self._run(buf, base, i, lim, parts)
            if end >= 0:
                i = done = end
            end = self._singles(buf, base, i, lim, parts)
            if end >= 0:
                i = done = end
            if not parts:
                return []
            if i == blk_end:
                continue
            if blk_end - i < 7:  # trailer
                if nbuf > blk_end:
                    i = blk_end
                    continue
                break
            end = self._straddler(buf, base, i, blk_end, nbuf, parts)
            if end < 0:
                break
            i = done = end
        if not parts:
            return []
        log.consume(base + done)
        self.rendered += 1
        return [b"".join(parts)]

    def _run(self, buf: bytes, base: int, i: int, lim: int, parts: list[bytes]) -> int:
        """Render the uniform single-Put records at ``buf[i:lim]`` into ``parts``; their end,
        or -1 for none."""
        # header(crc 4, length 2, type 1) seq 8, count 4, tag 1, klen 1, key k, vlen 1, value v
        if i + 22 > lim:
            return -1
        length = buf[i + 4] | (buf[i + 5] << 8)
        if buf[i + 6] != 1 or buf[i + 15 : i + 20] != b"\x01\x00\x00\x00\x01":
            return -1
        k = buf[i + 20]
        if k >= 0x80 or i + 21 + k >= lim:
            return -1
        v = length - 15 - k
        if v < 0 or v >= 0x80 or buf[i + 21 + k] != v:
            return -1
        stride = 7 + length
        pats = self._rec_rx.get((length, k, v))
        if pats is None:
            if len(self._rec_rx) > 64:
                self._rec_rx.clear()
            pats = self._rec_rx[(length, k, v)] = (
                re.compile(b".{6}(.{%d})" % (stride - 6), re.S),  # the CRC's input of each record
                re.compile(b"(?:" + _record_pattern(length, k, v, False) + b")+", re.S),
            )
        # Fast check first: every record that fits in the rest of the block has the run's
        # constant bytes (length, type, count, tag, key and value lengths) -- byte columns
        # compared at C speed. Otherwise the regex finds where the run ends.
        count = (lim - i) // stride
        end = i + count * stride
        region = buf[i:end]
        for col, val in ((4, length & 0xFF), (5, length >> 8), (6, 1), (15, 1), (16, 0), (17, 0), (18, 0), (19, 1), (20, k), (21 + k, v)):
            if region[col::stride] != bytes((val,)) * count:
                m = pats[1].match(buf, i, lim)
                if m is None:
                    return -1
                end = m.end()
                count = (end - i) // stride
                region = buf[i:end]
                break
        if count < _MIN_RUN and not parts:
            return -1
        keys = bytearray(k * count)  # the keys back to back, from byte columns
        for c in range(k):
            keys[c::k] = region[21 + c :: stride]
        if not _crcs_ok(_lanes(region, stride, 0, 4), pats[0].findall(buf, i, end)) or not _json_safe(keys):
            return -1  # the general path finds and reports the exact record
        seqs = struct.unpack(f"<{count}Q", _lanes(region, stride, 7, 8))
        offsets = range(base + i, base + end, stride)
        ds = len(str(min(seqs)))
        do = len(str(offsets[0]))
        if ds == len(str(max(seqs))) and do == len(str(offsets[-1])):
            # fixed-width lines: seq and offset by one %-format, keys written in as columns
            tpl = self._fixed.get((k, count))
            if tpl is None:
                if len(self._fixed) > 32:
                    self._fixed.clear()
                tpl = self._fixed[(k, count)] = self.line.replace(b'"key":"%s"', b'"key":"' + b"~" * k + b'"', 1) * count
            args: list[Any] = [None] * (2 * count)
            args[0::2] = seqs
            args[1::2] = offsets
            out = bytearray(tpl % tuple(args))
            width = len(out) // count
            at = len(self.head) + ds + len(self.mid)
            for c in range(k):
                out[at + c :: width] = keys[c::k]
            parts.append(bytes(out))
        else:
            kb = bytes(keys)
            split = [kb[j : j + k] for j in range(0, k * count, k)] if k else [b""] * count
            parts.append(self._lines(seqs, split, offsets))
        return end

    def _singles(self, buf: bytes, base: int, i: int, lim: int, parts: list[bytes]) -> int:
        """Render consecutive one-Put records of any (short) lengths at ``buf[i:lim]`` with a
        plain loop (no Op/Batch/Struct per record); their end, or -1 for none."""
        unpack = _FUSED.unpack_from
        crc = crc32c
        unsafe = _JSON_UNSAFE
        args: list[Any] = []
        ext = args.extend
        # inlined for speed: header + CRC + single-Put parse as in wal._scan_simple_records, but rendering lines, no Op
        while i + 22 <= lim:
            masked, length, rtype, seq, count, tag = unpack(buf, i)
            e = i + 7 + length
            if rtype != 1 or count != 1 or tag != 1 or e > lim:
                break
            kl = buf[i + 20]
            ke = i + 21 + kl
            if kl >= 0x80 or ke >= e:
                break
            vl = buf[ke]
            vs = ke + 1
            if vl >= 0x80:
                if vs < e and buf[vs] < 0x80:
                    vl = (vl & 0x7F) | (buf[vs] << 7)
                    vs += 1
                else:
                    break
            if vs + vl != e:
                break
            c = crc(buf[i + 6 : e])
            if ((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF) != masked:
                break
            key = buf[i + 21 : ke]
            if len(key.translate(None, unsafe)) != kl:
                break
            ext((seq, key, base + i))
            i = e
        if not args:
            return -1
        n = len(args) // 3
        tpl = self._templates.get(n)
        if tpl is None:
            tpl = self.line * n
            if n <= 4096:
                if len(self._templates) > 32:
                    self._templates.clear()
                self._templates[n] = tpl
        parts.append(tpl % tuple(args))
        return i

    def _straddler(self, buf: bytes, base: int, i: int, blk_end: int, nbuf: int, parts: list[bytes]) -> int:
        """A single-Put record as a FIRST fragment filling the block from ``i`` and a LAST
        fragment opening the next one: append it and return its end, else -1."""
        if i + 7 > nbuf or buf[i + 6] != 2 or i + 7 + (buf[i + 4] | (buf[i + 5] << 8)) != blk_end:
            return -1
        j = blk_end
        if j + 7 > nbuf or buf[j + 6] != 4:
            return -1
        e = j + 7 + (buf[j + 4] | (buf[j + 5] << 8))
        if e > nbuf or e - j > 32768:
            return -1
        for a, b in ((i, blk_end), (j, e)):
            c = crc32c(buf[a + 6 : b])
            if ((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF) != int.from_bytes(buf[a : a + 4], "little"):
                return -1
        p = buf[i + 7 : blk_end] + buf[j + 7 : e]
        n = len(p)
        if n < 16 or p[8:13] != b"\x01\x00\x00\x00\x01":
            return -1
        k = p[13]
        if k >= 0x80 or 15 + k > n or p[14 + k] >= 0x80 or n != 15 + k + p[14 + k]:
            return -1
        key = p[14 : 14 + k]
        if not _json_safe(key):
            return -1
        parts.append(self.line % (int.from_bytes(p[:8], "little"), key, base + i))
        return e


def _speedups() -> Any:
    """The optional C renderer ``cdc.cli._dumpfast``, or None when it is not built or
    ``CDC_NO_SPEEDUPS`` is set (to anything but "" or "0"): then the Python path does the same."""
    if os.environ.get("CDC_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        from cdc.cli import _dumpfast
    except ImportError:
        return None
    return _dumpfast if hasattr(_dumpfast, "scan") else None  # the extension, not a stray directory


def _manifest_names(db_dir: str) -> dict[int, str]:
    """cf id -> name from the MANIFEST in ``db_dir`` (live and dropped); {} without one."""
    if not os.path.isfile(os.path.join(db_dir, "CURRENT")):
        return {}
    state: ManifestState = load_manifest(db_dir)
    names = dict(state.dropped_cfs)
    names.update(state.cf_names)
    return names


def dump_file(
    number: int,
    path: str,
    out: BinaryIO,
    fmt: _Formatter,
    *,
    leveldb: bool = False,
) -> FormatError | None:
    """Decode one WAL file to ``out``; return the first format problem (after printing the
    records before it), or None."""
    return _dump_file(number, path, out, fmt, leveldb)[0]


def _dump_file(
    number: int, path: str, out: BinaryIO, fmt: _Formatter, leveldb: bool
) -> tuple[FormatError | None, bool]:
    """:func:`dump_file`, plus whether the problem is only an incomplete record at the end
    of the file (what a write in progress looks like), as opposed to damage."""
    reader = WalReader(number, leveldb=leveldb)
    fmt.numbering.new_wal()
    keys_only: _KeysOnly | None = None
    fast = None if leveldb or os.environ.get("CDC_DUMPWAL_NO_FASTPATH") else _speedups()
    if not leveldb and not os.environ.get("CDC_DUMPWAL_NO_FASTPATH") and (not fmt.values or fast is not None):
        keys_only = _KeysOnly(fmt.names[0], number, fast, fmt.values)
        if fmt.numbering.scheme != SEQ_PER_BATCH:  # its multi-Put batches are numbered per key
            reader.batch_decoder = keys_only.batch
            keys_only.multi = True
        reader.run_scanner = keys_only.records
    rendered = 0
    pending: list[bytes] = []
    size = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_READ_CHUNK)
            if not chunk:
                break
            reader.feed(chunk)
            batches = reader.read()
            if batches:
                if keys_only is not None and keys_only.rendered != rendered:
                    rendered = keys_only.rendered
                    data = fmt.encode_mixed(batches)
                else:
                    data = fmt.encode(batches)
                pending.append(data)
                size += len(data)
                if size >= _FLUSH_BYTES:
                    out.write(b"".join(pending) if len(pending) > 1 else data)
                    pending.clear()
                    size = 0
            if reader.state in ("corrupt", "end"):
                break
    if pending:
        out.write(b"".join(pending))
    incomplete_tail = reader.state == "need_more"
    return reader.close(), incomplete_tail


def _wal_files_for(
    path: str, warnings: list[str], db: str | None = None
) -> tuple[list[tuple[int, str]], dict[int, str], bool]:
    """(files, cf names, leveldb) for a file or directory PATH; raises StoreError.

    ``db``: the DB directory holding CURRENT/MANIFEST when PATH is (in) a separate ``wal_dir``.
    A MANIFEST that cannot be decoded does not stop the dump: a line is added to ``warnings``
    and column families are shown as ``cf<id>``.
    """
    if db is not None:
        info = detect_store(db, path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))
        try:
            names = _manifest_names(info.db_dir)
        except FormatError as exc:
            warnings.append(f"MANIFEST: {exc}; column families shown as cf<id>")
            names = {}
        if os.path.isdir(path):
            return list_wal_files(path), names, info.kind == "leveldb"
        return [(_file_number(path), path)], names, info.kind == "leveldb"
    if os.path.isdir(path):
        try:
            info = detect_store(path)
        except StoreError:
            files = list_wal_files(path)
            if not files:
                raise
            return files, {}, False
        leveldb = info.kind == "leveldb"
        try:
            names = _manifest_names(info.db_dir)
        except FormatError as exc:
            warnings.append(f"MANIFEST: {exc}; column families shown as cf<id>")
            names = {}
        return list_wal_files(info.wal_dir), names, leveldb
    number = _file_number(path)
    parent = os.path.dirname(os.path.abspath(path))
    db_dir = parent
    if os.path.basename(parent) == "archive" and not os.path.isfile(
        os.path.join(parent, "CURRENT")
    ):
        db_dir = os.path.dirname(parent)
    names: dict[int, str] = {}
    leveldb = False
    if os.path.isfile(os.path.join(db_dir, "CURRENT")):
        try:
            info = detect_store(db_dir)
            leveldb = info.kind == "leveldb"
            names = _manifest_names(db_dir)
        except (StoreError, FormatError):
            names = {}
    return [(number, path)], names, leveldb


def _file_number(path: str) -> int:
    name = os.path.basename(path)
    m = _WAL_NAME.match(name)
    if m:
        return int(m.group(1))
    digits = re.match(r"^(\d+)", name)
    return int(digits.group(1)) if digits else 0


def _first_seq(path: str, leveldb: bool) -> int | None:
    """Header sequence number of the first record of a WAL file, or None."""
    reader = WalReader(_file_number(path), leveldb=leveldb)
    try:
        with open(path, "rb") as f:
            reader.feed(f.read(1 << 20))
    except OSError:
        return None
    batches = reader.read()
    return batches[0].seq if batches else None


def _continuation(path: str, number: int, files: list[tuple[int, str]], extra_dirs: list[str]) -> str | None:
    """The WAL after ``number``: the next in ``files``, else the lowest higher number found in
    ``extra_dirs`` (a lone archived WAL: its directory, the DB dir, ``archive/``)."""
    higher = [(n, p) for n, p in files if n > number]
    if not higher:
        for d in extra_dirs:
            try:
                higher += [(n, p) for n, p in list_wal_files(d) if n > number]
            except (OSError, CdcError):
                continue
    return min(higher)[1] if higher else None


def _torn_tail(problem: FormatError, incomplete_tail: bool, path: str) -> bool:
    """The problem is a torn last record: a record cut short at the end of the file, or a bad
    record in the file's last block (nothing after it)."""
    if incomplete_tail:
        return True
    if problem.offset < 0:
        return False
    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    return size <= (problem.offset // 32768 + 1) * 32768


def run(path: str, values: bool = False, out: BinaryIO | None = None, err=None, db: str | None = None) -> int:
    """Entry point of ``cdc dump-wal``; returns the exit code and never raises.

    Args:
        path: a WAL file or a DB directory (or a separate ``wal_dir`` with ``db``).
        values: include values.
        out: binary stream for NDJSON (default: stdout).
        err: text stream for the error lines (default: stderr).
        db: the DB directory holding CURRENT/MANIFEST (column family names) when PATH is
            in a separate ``wal_dir``.
    """
    # Short-lived process decoding millions of acyclic objects: the cyclic GC only costs time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(path, values, out, err, db)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run(path: str, values: bool, out: BinaryIO | None, err, db: str | None = None) -> int:
    if out is None:
        out = sys.stdout.buffer
    if err is None:
        err = sys.stderr
    code = 0
    try:
        if not os.path.exists(path):
            print(f"cdc: {path}: no such file or directory", file=err)
            return 2
        if db is not None and not os.path.isdir(db):
            print(f"cdc: --db {db}: not a directory", file=err)
            return 2
        warnings: list[str] = []
        try:
            files, names, leveldb = _wal_files_for(path, warnings, db)
        except StoreError as exc:
            print(f"cdc: {exc}", file=err)
            return 2
        if not files:
            print(f"cdc: {path}: no WAL files", file=err)
            return 0
        for line in warnings:
            print(f"cdc: {path}: {line}", file=err)
            code = 1
        fmt = _Formatter(names, values)
        live_dir = os.path.isdir(path)
        last = len(files) - 1
        for i, (number, file_path) in enumerate(files):
            try:
                problem, incomplete_tail = _dump_file(number, file_path, out, fmt, leveldb)
            except FileNotFoundError:
                # Deleted or archived while we were listing: try archive/, else say so.
                alt = os.path.join(os.path.dirname(file_path), "archive", os.path.basename(file_path))
                if os.path.isfile(alt):
                    problem, incomplete_tail = _dump_file(number, alt, out, fmt, leveldb)
                else:
                    print(f"cdc: {file_path}: vanished while reading", file=err)
                    code = 1
                    continue
            if problem is not None:
                where = f" @{problem.offset:#x}" if problem.offset >= 0 else ""
                name = os.path.basename(file_path)
                if incomplete_tail and live_dir and i == last:
                    # The store's newest WAL: the last record is being written right now.
                    out.flush()
                    print(f"cdc: note: {name}{where}: incomplete last record (being written); not printed", file=err)
                    continue
                if _torn_tail(problem, incomplete_tail, file_path) and fmt.last_seq >= 0:
                    # A writer crashed mid-record and the store went on in the next WAL at the
                    # next sequence number: RocksDB's recovery treats this as the WAL's end.
                    parent = os.path.dirname(os.path.abspath(file_path))
                    dirs = [parent, os.path.dirname(parent), os.path.join(parent, "archive")]
                    if db is not None:
                        dirs.append(db)
                    nxt = _continuation(file_path, number, files, dirs)
                    if nxt is not None and _first_seq(nxt, leveldb) == fmt.last_seq + 1:
                        out.flush()
                        print(
                            f"cdc: note: {name}{where}: torn last record ({problem.reason}); "
                            f"{os.path.basename(nxt)} continues at seq {fmt.last_seq + 1} (a writer crash, nothing lost)",
                            file=err,
                        )
                        continue
                print(f"cdc: {name}{where}: {problem.reason}", file=err)
                code = 1
        out.flush()
    except BrokenPipeError:
        # Reader went away (e.g. `| head`): stop quietly, keep the interpreter from complaining.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except OSError as exc:
        if isinstance(exc, IsADirectoryError):
            why = f"{exc.filename}: is a directory"
        elif isinstance(exc, PermissionError):
            why = f"{exc.filename or path}: permission denied"
        else:
            why = f"{getattr(exc, 'filename', None) or path}: {exc.strerror or exc}"
        print(f"cdc: {why}", file=err)
        return 2
    except CdcError as exc:
        print(f"cdc: {exc}", file=err)
        return 1
    except Exception as exc:  # last resort: never a traceback on the command line
        print(f"cdc: internal error: {type(exc).__name__}: {exc}", file=err)
        return 1
    return code
