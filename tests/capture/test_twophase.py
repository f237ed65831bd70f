"""2PC prepared sections (cdc.capture.twophase), tested on decoded records directly (pure)."""

from __future__ import annotations

from cdc.capture.checkpoint import decode_prepared
from cdc.capture.twophase import PreparedSections
from cdc.format.wal import SEQ_PER_BATCH, SEQ_PER_KEY, Batch, Op


def _prepare(xid: bytes, ops: list[Op]) -> list[Op]:
    return [Op(-1, "begin_prepare", 0, None, None, None), *ops, Op(-1, "end_prepare", 0, xid, None, None)]


def test_write_committed_prepared_records_take_the_commit_numbers() -> None:
    txns = PreparedSections()
    prep = _prepare(b"x1", [Op(-1, "put", 0, b"a", b"1", None), Op(-1, "delete", 0, b"b", None, None)])
    out, extra = txns.resolve(Batch(5, 0, 10, 0, prep), SEQ_PER_KEY, prep)
    assert out == [] and extra == 0 and txns.dirty
    assert decode_prepared(txns.take_checkpoint()) == {b"x1": (SEQ_PER_KEY, [prep[1], prep[2]])}
    assert txns.take_checkpoint() is None  # taken: clean until the next change
    # commit record with its own data record first (a merged write group), then the prepared ones
    commit = [Op(20, "put", 0, b"c", b"3", None), Op(-1, "commit", 0, b"x1", None, None), Op(21, "put", 0, b"d", b"4", None)]
    out, extra = txns.resolve(Batch(5, 100, 20, 2, commit), SEQ_PER_KEY, commit)
    assert [(o.seq, o.key) for o in out] == [(20, b"c"), (21, b"a"), (22, b"b"), (23, b"d")]
    assert extra == 2 and txns.txns == {} and txns.dirty


def test_write_prepared_keeps_prepare_numbers_rollback_drops_unmatched_commit_counted() -> None:
    txns = PreparedSections()
    prep = _prepare(b"x", [Op(7, "put", 0, b"a", b"1", None)])
    txns.resolve(Batch(1, 0, 7, 1, prep), SEQ_PER_BATCH, prep)
    more = _prepare(b"x", [Op(8, "merge", 0, b"a", b"+", None)])  # WriteUnprepared: a second section
    txns.resolve(Batch(1, 50, 8, 1, more), SEQ_PER_BATCH, more)
    out, extra = txns.resolve(Batch(1, 90, 9, 0, [Op(-1, "commit", 0, b"x", None, None)]), SEQ_PER_BATCH, [Op(-1, "commit", 0, b"x", None, None)])
    assert [(o.seq, o.op) for o in out] == [(7, "put"), (8, "merge")] and extra == 0
    rb = _prepare(b"y", [Op(10, "put", 0, b"z", b"1", None)]) + [Op(-1, "rollback", 0, b"y", None, None)]
    out, _ = txns.resolve(Batch(1, 120, 10, 1, rb), SEQ_PER_BATCH, rb)
    assert out == [] and txns.txns == {}
    stray = [Op(-1, "commit", 0, b"never-prepared", None, None)]
    out, _ = txns.resolve(Batch(1, 200, 11, 0, stray), SEQ_PER_BATCH, stray)
    assert out == [] and txns.unmatched_commits == 1
