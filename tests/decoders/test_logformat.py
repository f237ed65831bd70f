"""Log framing on byte vectors: whole, split at every byte, truncated, bit flips, fuzz."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.errors import CorruptRecord, FormatError
from cdc.format.blocks import BLOCK_SIZE, LogReader, mask_crc, unmask_crc

from .conftest import batch, physical, write_log

# Vectors from the format reference (computed from the formula there).
EMPTY_BATCH_FULL = bytes.fromhex("c866e635" "0c00" "01" "0100000000000000" "00000000")
EMPTY_BATCH_RECYCLED_5 = bytes.fromhex(
    "f6dec0bc" "0c00" "05" "05000000" "0100000000000000" "00000000"
)
PUT_K_V_SEQ7 = bytes.fromhex("3ae630c6" "1100" "01" "0700000000000000" "01000000" "01016b0176")


def read_all(data: bytes, log_number: int = 1, **kw) -> tuple[list, LogReader]:
    r = LogReader(log_number, **kw)
    r.feed(data)
    return r.read(), r


def test_crc_mask_roundtrip():
    from crc32c import crc32c

    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"\x00" * 32) == 0x8A9136AA
    for v in (0, 1, 0xFFFFFFFF, 0xE3069283, 0x12345678):
        assert unmask_crc(mask_crc(v)) == v


def test_reference_vectors():
    recs, r = read_all(EMPTY_BATCH_FULL)
    assert recs == [(0, 1, batch(1, 0, b""))] and r.state == "ok" and r.offset == 19
    recs, r = read_all(EMPTY_BATCH_RECYCLED_5, log_number=5)
    assert recs == [(0, 5, batch(1, 0, b""))] and r.state == "ok"
    recs, r = read_all(PUT_K_V_SEQ7)
    assert recs[0].payload == batch(7, 1, b"\x01\x01k\x01v")
    assert physical(1, batch(7, 1, b"\x01\x01k\x01v")) == PUT_K_V_SEQ7
    assert physical(5, batch(1, 0, b""), 5) == EMPTY_BATCH_RECYCLED_5


def _vector(n_records: int = 6, big: int = 70000, log_number: int | None = None) -> tuple[bytes, list[bytes]]:
    payloads = [bytes([i]) * (i * 37 % 300) for i in range(n_records)]
    payloads.insert(2, b"B" * big)  # spans three blocks
    payloads.append(b"")  # zero-length FULL is legal
    return write_log(payloads, log_number), payloads


@pytest.mark.parametrize("log_number", [None, 9])
def test_whole_and_offsets(log_number):
    data, payloads = _vector(log_number=log_number)
    recs, r = read_all(data, log_number=9)
    assert [x.payload for x in recs] == payloads
    assert r.state == "ok" and r.offset == len(data) and r.close() is None
    # Each record's offset is a resume point.
    for rec in recs:
        r2 = LogReader(9, offset=rec.offset)
        r2.feed(data[rec.offset :])
        assert [x.payload for x in r2.read()] == payloads[recs.index(rec) :]


def test_split_at_every_byte():
    data, payloads = _vector(n_records=3, big=40000)
    for cut in range(0, len(data) + 1, 1 if len(data) < 3000 else 7):
        r = LogReader(1)
        r.feed(data[:cut])
        got = r.read()
        r.feed(data[cut:])
        got += r.read()
        assert [x.payload for x in got] == payloads, cut
        assert r.state == "ok"


def test_byte_by_byte_small():
    data = write_log([b"a" * 10, b"", b"xyz" * 20])
    r = LogReader(1)
    got = []
    for i in range(len(data)):
        r.feed(data[i : i + 1])
        got += r.read()
        assert r.state in ("ok", "need_more")
    assert [x.payload for x in got] == [b"a" * 10, b"", b"xyz" * 20]


def test_truncated_at_every_byte_is_need_more_then_same_records():
    data, payloads = _vector(n_records=4, big=33000)
    ends = []
    r = LogReader(1)
    r.feed(data)
    full = r.read()
    ends = {rec.offset for rec in full}
    step = 1 if len(data) < 5000 else 11
    for cut in list(range(0, len(data), step)) + [len(data) - 1]:
        r = LogReader(1)
        r.feed(data[:cut])
        got = r.read()
        assert r.state in ("ok", "need_more"), (cut, r.error)
        assert [x.payload for x in got] == payloads[: len(got)]
        # resume with a fresh reader from offset: the rest comes out identical
        r2 = LogReader(1, offset=r.offset)
        r2.feed(data[r.offset :])
        assert [x.payload for x in got + r2.read()] == payloads
        if r.state == "need_more":
            err = r.close()
            # a sealed file cut mid-record is a truncation at the resume offset
            assert isinstance(err, CorruptRecord) and err.offset == r.offset
            assert "truncated" in err.reason
    assert ends


def test_bit_flips_give_typed_error_at_record_offset():
    payloads = [b"first" * 3, b"second" * 40, b"third"]
    data = write_log(payloads)
    r = LogReader(3)
    r.feed(data)
    recs = r.read()
    starts = [rec.offset for rec in recs]
    for pos in range(len(data)):
        for bit in (0, 5, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            r = LogReader(3)
            r.feed(bytes(bad))
            got = r.read()
            idx = max(i for i, s in enumerate(starts) if s <= pos)
            # the records before the damaged one are returned intact
            assert [x.payload for x in got[:idx]] == payloads[:idx]
            if r.state == "corrupt":
                assert isinstance(r.error, CorruptRecord)
                assert r.error.log_number == 3
                assert r.error.offset == starts[idx]
                assert len(got) == idx
            else:
                # a flipped length can make the record look incomplete (need more data)
                assert r.state == "need_more", (pos, bit, r.state)
                assert r.close() is not None


def test_trailer_skipped_only_when_data_beyond():
    # Fill the first block so that 5 bytes remain, then a record in block 2.
    first = b"x" * (BLOCK_SIZE - 7 - 5)
    data = write_log([first, b"second"])
    assert data[BLOCK_SIZE - 5 : BLOCK_SIZE] == b"\x00" * 5
    r = LogReader(1)
    r.feed(data[:BLOCK_SIZE])
    assert [x.payload for x in r.read()] == [first]
    assert r.offset == BLOCK_SIZE - 5 and r.state == "need_more"
    assert r.close() is None  # zero padding at the end of a sealed file is fine
    r = LogReader(1)
    r.feed(data)
    assert [x.payload for x in r.read()] == [first, b"second"]


def test_zero_filled_tail_and_zero_header_block_skip():
    data = write_log([b"abc"]) + b"\x00" * 100
    recs, r = read_all(data)
    assert [x.payload for x in recs] == [b"abc"] and r.state == "need_more"
    assert r.offset == 10 and r.close() is None
    # zero header with data beyond the block end: the rest of the block is skipped
    pad = BLOCK_SIZE - len(write_log([b"abc"]))
    data2 = write_log([b"abc"]) + b"\x00" * pad + physical(1, b"next")
    recs, r = read_all(data2)
    assert [x.payload for x in recs] == [b"abc", b"next"] and r.state == "ok"


def test_recyclable_old_record_is_end():
    new = write_log([b"n1", b"n2"], log_number=20)
    old = write_log([b"o1", b"o2", b"o3"], log_number=12)
    data = new + old[len(new) :] if len(old) > len(new) else new + old
    recs, r = read_all(new + old, log_number=20)
    assert [x.payload for x in recs] == [b"n1", b"n2"]
    assert r.state == "end" and r.error is None and r.offset == len(new)
    assert r.close() is None
    # garbage of the previous life cut mid-record: end too, not corruption
    recs, r = read_all(new + b"\x13" * 4 + b"\x05\x00\x01" + b"\x13" * 50, log_number=20)
    assert [x.payload for x in recs] == [b"n1", b"n2"] and r.state == "end"
    assert data


def test_recyclable_after_legacy_is_corrupt():
    data = write_log([b"a"]) + write_log([b"b"], log_number=1)
    recs, r = read_all(data)
    assert [x.payload for x in recs] == [b"a"]
    assert r.state == "corrupt" and r.error.offset == 8


def test_unknown_types():
    # 0x80 bit: skipped
    data = physical(0x85, b"future") + physical(1, b"ok")
    recs, r = read_all(data)
    assert [x.payload for x in recs] == [b"ok"] and r.state == "ok"
    # otherwise corruption at its offset
    data = physical(1, b"ok") + physical(42, b"??") + physical(1, b"lost")
    recs, r = read_all(data)
    assert [x.payload for x in recs] == [b"ok"]
    assert r.state == "corrupt" and r.error.offset == 9 and "unknown record type 42" in r.error.reason
    # LevelDB knows types 1-4 only
    recs, r = read_all(physical(9, struct.pack("<I", 7)), leveldb=True)
    assert recs == [] and r.state == "corrupt"


def test_fragment_sequence_errors():
    mid = physical(3, b"m")
    recs, r = read_all(physical(1, b"a") + mid)
    assert r.state == "corrupt" and r.error.offset == 8 and "missing start" in r.error.reason
    recs, r = read_all(physical(2, b"a") + physical(1, b"b"))
    assert r.state == "corrupt" and r.error.offset == 0 and "partial record" in r.error.reason
    recs, r = read_all(physical(2, b"a") + physical(2, b"b"))
    assert r.state == "corrupt"
    recs, r = read_all(physical(4, b"z"))
    assert r.state == "corrupt"


def test_bad_length_crossing_block():
    hdr = struct.pack("<IHB", 0, 40000, 1)
    recs, r = read_all(hdr + b"\x01" * 40000)
    assert r.state == "corrupt" and "bad record length" in r.error.reason
    assert str(r.error).startswith("file 000001 @0x0")


def test_metadata_records_pass_through():
    data = physical(9, struct.pack("<I", 7)) + physical(130, b"\x00" * 24) + physical(1, b"x")
    recs, r = read_all(data)
    assert [x.rtype for x in recs] == [9, 130, 1]


def test_feed_after_corrupt_returns_nothing():
    recs, r = read_all(physical(1, b"a") + b"\xff" * 20)
    assert r.state == "corrupt"
    r.feed(physical(1, b"b"))
    assert r.read() == [] and r.state == "corrupt"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000), st.booleans(), st.integers(0, 2**32))
def test_arbitrary_bytes_never_raise(data, leveldb, log_number):
    r = LogReader(log_number, leveldb=leveldb)
    r.feed(data)
    recs = r.read()
    assert r.state in ("ok", "need_more", "end", "corrupt")
    assert all(isinstance(x.payload, bytes) for x in recs)
    err = r.close()
    assert err is None or isinstance(err, FormatError)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(max_size=5000), min_size=1, max_size=12),
    st.lists(st.integers(0, 80000), max_size=6),
)
def test_any_partition_yields_same_records(payloads, cuts):
    data = write_log(payloads)
    bounds = sorted({min(c, len(data)) for c in cuts})
    r = LogReader(1)
    got = []
    prev = 0
    for c in bounds + [len(data)]:
        r.feed(data[prev:c])
        got += r.read()
        prev = c
    assert [x.payload for x in got] == payloads
    assert r.state == "ok" and r.offset == len(data)


def test_recyclable_log_number_checked_before_length_and_crc():
    """RocksDB's order (db/log_reader.cc ReadPhysicalRecord): for a recyclable header the log
    number is compared right after the 11 header bytes are available, *before* the length and
    the CRC are checked; a foreign log number is kOldRecord, which ReadRecord treats as the end
    of the log. So bytes with a recyclable type and a foreign log number end the data even when
    their CRC or length is garbage; only a record of *this* log number is CRC-checked."""
    new = write_log([b"n1", b"n2"], log_number=20)
    foreign = bytearray(physical(5, b"old payload", 12))
    foreign[0:4] = b"\xde\xad\xbe\xef"  # bad CRC
    recs, r = read_all(new + bytes(foreign), log_number=20)
    assert [x.payload for x in recs] == [b"n1", b"n2"]
    assert r.state == "end" and r.error is None and r.offset == len(new) and r.close() is None
    huge = bytearray(foreign)
    huge[4:6] = b"\xff\xff"  # and a length past the block end
    recs, r = read_all(new + bytes(huge), log_number=20)
    assert [x.payload for x in recs] == [b"n1", b"n2"] and r.state == "end"
    # the same bytes with this file's log number are checked: a CRC mismatch after this life's
    # records is a recycled file's tail (RocksDB: kBadRecordChecksum with recycled_ -> end)...
    own = bytearray(physical(5, b"old payload", 20))
    own[0:4] = b"\xde\xad\xbe\xef"
    recs, r = read_all(new + bytes(own), log_number=20)
    assert [x.payload for x in recs] == [b"n1", b"n2"] and r.state == "end"
    # ...and as the very first record it is corruption (point-in-time recovery reports it)
    recs, r = read_all(bytes(own), log_number=20)
    assert recs == [] and r.state == "corrupt" and r.error.offset == 0
    assert r.error.reason == "checksum mismatch" if hasattr(r.error, "reason") else "checksum" in str(r.error)
    # a foreign log number on the very first record: nothing of this life yet -> end
    recs, r = read_all(bytes(foreign), log_number=20)
    assert recs == [] and r.state == "end"


def test_skip_orphan_fragments_steps_over_the_tail_of_a_lost_record():
    """The resync helper (one owner of the framing: cdc.format.blocks) on bytes."""
    from cdc.format.blocks import skip_orphan_fragments

    data, payloads = _vector()  # payloads[2] (70000 B) is FIRST, MIDDLE, LAST over three blocks

    def read_at(off: int, n: int) -> bytes:
        return data[off : off + n]

    recs, _ = read_all(data)
    big = recs[2]
    assert big.payload == payloads[2]
    first_block_end = (big.offset // BLOCK_SIZE + 1) * BLOCK_SIZE
    # resync at the block after the FIRST fragment: MIDDLE fills it, LAST ends in the next one
    resume = skip_orphan_fragments(read_at, first_block_end)
    assert resume == recs[3].offset
    # a block that starts with a whole record: nothing to skip; past the end: stay
    assert skip_orphan_fragments(read_at, 0) == 0
    assert skip_orphan_fragments(read_at, len(data) + BLOCK_SIZE) == len(data) + BLOCK_SIZE
    # a fragment header whose length crosses its block: left to the reader
    bad = bytearray(data)
    struct.pack_into("<H", bad, first_block_end + 4, BLOCK_SIZE)
    assert skip_orphan_fragments(lambda o, n: bytes(bad[o : o + n]), first_block_end) == first_block_end


def test_window_and_consume_hand_a_scanned_run_back():
    """A scanner reads whole records in place through window() and reports them with consume():
    read() then continues after them exactly as if it had returned them."""
    data, payloads = _vector()
    r = LogReader(1)
    r.feed(data)
    buf, base, i = r.window()
    assert (base, i) == (0, 0) and not r.recycled and not r.in_fragment
    # scan the first two whole records by hand (7-byte header + length)
    for _ in range(2):
        length = int.from_bytes(buf[i + 4 : i + 6], "little")
        assert buf[i + 6] == 1
        i += 7 + length
    r.consume(base + i)
    assert r.offset == i
    rest = r.read()
    assert [x.payload for x in rest] == payloads[2:] and r.state == "ok"
