"""Capture checkpoint codec (v3: numbering scheme; ``wal_2pc``: unresolved prepared sections)
and what they carry across a restart."""

from __future__ import annotations

from collections import Counter
from typing import Any

from cdc.capture import (
    WalCheckpoint,
    decode_checkpoint,
    decode_prepared,
    encode_checkpoint,
    encode_prepared,
)
from cdc.format.wal import SEQ_PER_BATCH, SEQ_PER_KEY, Op
from tests.capture.conftest import CaptureRig, wait_for


def test_checkpoint_v3_round_trip_and_older_versions() -> None:
    for scheme, strong in ((None, False), (SEQ_PER_KEY, False), (SEQ_PER_KEY, True), (SEQ_PER_BATCH, True)):
        cp = WalCheckpoint(12, 4096, 99, 7, ((1, 8),), scheme, strong)
        assert decode_checkpoint(encode_checkpoint(cp)) == cp
    v3 = encode_checkpoint(WalCheckpoint(12, 4096, 99, 0, ((1, 8),)))
    v2 = bytes([2]) + v3[1:-1]  # what cdc wrote before the scheme byte
    assert decode_checkpoint(v2) == WalCheckpoint(12, 4096, 99, 0, ((1, 8),))
    assert decode_checkpoint(v3[:-1] + bytes([0x40])) is None  # an unknown scheme code
    assert decode_checkpoint(v3 + b"x") is None


def test_prepared_round_trip_and_garbage() -> None:
    prepared = {
        b"x1": (SEQ_PER_BATCH, [Op(4, "put", 0, b"d", b"4", None), Op(5, "merge", 1, b"m", b"\xff", None)]),
        b"x2": (SEQ_PER_KEY, [Op(-1, "delete_range", 0, b"a", None, b"z"), Op(-1, "put", 2, b"k", b"v", None, b"ts")]),
    }
    assert decode_prepared(encode_prepared(prepared)) == prepared
    assert decode_prepared(encode_prepared({})) == {}
    for bad in (b"", b"\x00", b"\x92\x02\x90", b"garbage", encode_prepared(prepared)[:-3]):
        assert decode_prepared(bad) is None


async def test_scheme_survives_a_restart(rig: CaptureRig, cxx_writer: Any) -> None:
    """A WritePrepared rollback record ([restore writes][Rollback]) says nothing about the
    numbering: after a restart it is numbered as the checkpoint remembers (per batch)."""
    w = cxx_writer(rig.db, policy="prepared")
    w.script("""
        put default a 1
        txn r
        put default h 1
        put default f 1
        end
        prepare r
        put default seen 1
    """)
    await rig.start()
    await wait_for(lambda: any(e["key"] == "seen" for e in rig.key_changes()), what="seen")
    await rig.crash()
    w.script("""
        rollback r
        put default after 1
    """)
    rep = w.report()
    await rig.start()
    await wait_for(lambda: any(e["key"] == "after" for e in rig.journal_events() if e["type"] == "key_change"), what="after")
    got = Counter((e["cf"], e["key"].encode(), e["seq"], e["operation"]) for e in rig.journal_events() if e["type"] == "key_change")
    rolled_back = {(b"h", "put"), (b"f", "put")}
    assert got == Counter((cf, k, s, t) for cf, k, s, t, _v in rep.versions if (k, t) not in rolled_back)
    assert rig.capture.seq_guesses == 0


def test_prepared_with_wrong_field_types_is_not_understood() -> None:
    import msgspec

    good = [1, b"k", b"v", None, None]
    for bad in ([["x", "put", 0, *good[1:]]], [[1, "frobnicate", 0, *good[1:]]], [[1, "put", "0", *good[1:]]], [[1, "put", 0, "k", b"v", None, None]]):
        data = msgspec.msgpack.encode([1, [[b"x1", SEQ_PER_BATCH, bad]]])
        assert decode_prepared(data) is None
    assert decode_prepared(msgspec.msgpack.encode([1, [["x1", SEQ_PER_BATCH, []]]])) is None
