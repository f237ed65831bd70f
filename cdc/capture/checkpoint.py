"""Capture's checkpoints: the bytes committed with the events, and back (pure codecs).

- ``"wal"`` (:class:`WalCheckpoint`): the position. Hand-packed little-endian, versioned by its
  first byte: v1 = ``<BQQqB`` (version, WAL number, offset, last seq, compression); v2 = v1 +
  u16 count + count x (u32 cf id, u16 timestamp size); v3 = v2 + u8 numbering scheme (0
  unknown, 1 per key, 2 per batch; +4 = strong). New writes are v3.
- ``"wal_2pc"``: the unresolved 2PC prepared sections (msgpack ``[1, [[xid, scheme, ops]...]]``).
- ``"wal.store"``: the store identity the position belongs to (JSON ``db_id``, ``seq_wal``,
  ``ino``).

Invariant: every version ever written decodes byte-exactly as it did (these bytes are on users'
disks); anything not understood decodes to None (capture then starts over, loudly), never
raises. Pure: bytes in, values out.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import msgspec

from cdc.capture.build import KEY_OPS
from cdc.format.wal import SEQ_PER_BATCH, SEQ_PER_KEY, Op

__all__ = [
    "CHECKPOINT_NAME",
    "IDENTITY_CHECKPOINT",
    "PREPARED_CHECKPOINT_NAME",
    "WalCheckpoint",
    "encode_checkpoint",
    "decode_checkpoint",
    "encode_prepared",
    "decode_prepared",
    "StoreIdentity",
    "encode_identity",
    "decode_identity",
]

CHECKPOINT_NAME = "wal"
#: the store identity capture's position belongs to (JSON ``{"db_id": ...}``), committed with it
IDENTITY_CHECKPOINT = "wal.store"
#: unresolved 2PC prepared sections (written only when they change; see encode_prepared)
PREPARED_CHECKPOINT_NAME = "wal_2pc"

# version, wal number, offset, last seq (-1 = none yet), compression
_CKPT = struct.Struct("<BQQqB")
_CKPT_V1 = 1
_CKPT_V2 = 2  # v2 = v1 + u16 count + count x (u32 cf id, u16 timestamp size)
_CKPT_VERSION = 3  # v3 = v2 + u8 numbering scheme (0 unknown, 1 per key, 2 per batch; +4 = strong)
_SCHEME_CODES = {None: 0, SEQ_PER_KEY: 1, SEQ_PER_BATCH: 2}
_SCHEME_NAMES = {v: k for k, v in _SCHEME_CODES.items()}
_CKPT_TS = struct.Struct("<IH")
_U16 = struct.Struct("<H")


class WalCheckpoint(NamedTuple):
    """Capture position persisted with the events (see module docstring).

    ``ts_sizes`` are the user-defined timestamp sizes (cf id, size) announced earlier in the
    WAL: a reader resuming mid-file needs them to split keys correctly.
    """

    log_number: int
    offset: int
    last_seq: int
    compression: int
    ts_sizes: tuple[tuple[int, int], ...] = ()
    scheme: str | None = None  # sequence numbering seen so far (wal.SEQ_PER_KEY / SEQ_PER_BATCH)
    scheme_strong: bool = False  # decided by a 2PC begin marker (see wal.seq_scheme_evidence)


def encode_checkpoint(cp: WalCheckpoint) -> bytes:
    """Checkpoint -> bytes (version 3: the 26-byte v1 layout, the timestamp sizes, the scheme)."""
    head = _CKPT.pack(_CKPT_VERSION, cp.log_number, cp.offset, cp.last_seq, cp.compression)
    ts = sorted(cp.ts_sizes)
    code = _SCHEME_CODES.get(cp.scheme, 0) | (4 if cp.scheme_strong else 0)
    return b"".join([head, _U16.pack(len(ts)), *(_CKPT_TS.pack(c, n) for c, n in ts), bytes((code,))])


def decode_checkpoint(data: bytes | None) -> WalCheckpoint | None:
    """Bytes -> checkpoint (v1, v2 or v3), or None when absent or not understood (capture then starts over)."""
    if not data or len(data) < _CKPT.size:
        return None
    version = data[0]
    if version == _CKPT_V1:
        if len(data) != _CKPT.size:
            return None
        _, number, offset, last_seq, compression = _CKPT.unpack(data)
        return WalCheckpoint(number, offset, last_seq, compression)
    if version not in (_CKPT_V2, _CKPT_VERSION) or len(data) < _CKPT.size + _U16.size:
        return None
    _, number, offset, last_seq, compression = _CKPT.unpack_from(data)
    (n,) = _U16.unpack_from(data, _CKPT.size)
    p = _CKPT.size + _U16.size
    tail = 1 if version == _CKPT_VERSION else 0
    if len(data) != p + n * _CKPT_TS.size + tail:
        return None
    ts = tuple(_CKPT_TS.unpack_from(data, p + i * _CKPT_TS.size) for i in range(n))
    scheme, strong = None, False
    if tail:
        code = data[-1]
        if code & ~7 or (code & 3) not in _SCHEME_NAMES:
            return None
        scheme, strong = _SCHEME_NAMES[code & 3], bool(code & 4) and bool(code & 3)
    return WalCheckpoint(number, offset, last_seq, compression, ts, scheme, strong)


_PREPARED_VERSION = 1
_prepared_encoder = msgspec.msgpack.Encoder()
_prepared_decoder = msgspec.msgpack.Decoder()


def encode_prepared(prepared: dict[bytes | None, tuple[str, list[Any]]]) -> bytes:
    """Unresolved 2PC prepared sections -> bytes (checkpoint ``wal_2pc``).

    ``prepared``: xid -> (numbering scheme of the prepare, its data records as ``wal.Op``
    tuples). Per-batch (WritePrepared/Unprepared) records carry the sequence numbers they got at
    prepare time; per-key (WriteCommitted) ones get theirs at the commit.
    """
    return _prepared_encoder.encode(
        [_PREPARED_VERSION, [[xid, scheme, [list(op) for op in ops]] for xid, (scheme, ops) in prepared.items()]]
    )


def decode_prepared(data: bytes | None) -> dict[bytes | None, tuple[str, list[Any]]] | None:
    """Bytes -> prepared sections (see :func:`encode_prepared`); None when absent or not understood."""
    if not data:
        return None
    try:
        version, txns = _prepared_decoder.decode(data)
        if version != _PREPARED_VERSION:
            return None
        out: dict[bytes | None, tuple[str, list[Any]]] = {}
        for xid, scheme, ops in txns:
            if scheme not in (SEQ_PER_KEY, SEQ_PER_BATCH):
                return None
            recs = [Op(*op) for op in ops]
            for r in recs:
                if not (
                    type(r.seq) is int
                    and r.op in KEY_OPS
                    and type(r.cf_id) is int
                    and all(f is None or type(f) is bytes for f in (r.key, r.value, r.end_key, r.ts))
                ):
                    return None
            if xid is not None and type(xid) is not bytes:
                return None
            out[xid] = (scheme, recs)
        return out
    except (msgspec.DecodeError, TypeError, ValueError):
        return None



class StoreIdentity(NamedTuple):
    """Checkpoint ``wal.store``: which store the position belongs to.

    ``seq_wal``: the WAL the last delivered record came from (the position's WAL can be a later
    one: capture moved on, or read only empty batches there), -1 when unknown; ``ino`` its inode
    (0 unknown). The duplicate filter and the "store replaced" checks need both.
    """

    db_id: str | None
    seq_wal: int | None = None
    ino: int = 0


_json_encode = msgspec.json.Encoder().encode


def encode_identity(ident: StoreIdentity) -> bytes:
    """Identity -> JSON bytes (``{"db_id":..,"seq_wal":..,"ino":..}``)."""
    return _json_encode({"db_id": ident.db_id, "seq_wal": ident.seq_wal, "ino": ident.ino})


def decode_identity(data: bytes | None) -> StoreIdentity | None:
    """JSON bytes -> identity; None when absent or not understood. ``seq_wal`` is None when the
    field is missing or not an int (older cdc), ``ino`` 0 likewise."""
    if not data:
        return None
    try:
        obj = msgspec.json.decode(data)
        db_id = obj.get("db_id")
    except (msgspec.DecodeError, AttributeError):
        return None
    seq_wal = obj.get("seq_wal")
    ino = obj.get("ino")
    return StoreIdentity(
        db_id,
        seq_wal if isinstance(seq_wal, int) else None,
        ino if isinstance(ino, int) else 0,
    )
