"""The MANIFEST follower shared by capture and the ops compaction fallback (cdc.sources.manifest),
and the store-identity checkpoint codec, on real RocksDB stores written by a writer process."""

from __future__ import annotations

import os
import threading

from cdc.capture.checkpoint import StoreIdentity, decode_identity, encode_identity
from cdc.sources.manifest import ManifestFollower
from cdc.sources.store import load_manifest
from tests.harness.writers import StoreWriter


def _manifest_size(db: str) -> int:
    with open(os.path.join(db, "CURRENT")) as f:
        return os.path.getsize(os.path.join(db, f.read().strip()))


def _same_state(a, b) -> None:
    for field in ("cf_names", "dropped_cfs", "log_number", "min_log_number_to_keep", "last_sequence", "next_file_number", "db_id"):
        assert getattr(a, field) == getattr(b, field), field
    assert set(a.files) == set(b.files)


def test_follower_state_equals_a_full_decode_and_reads_each_byte_once(tmp_path) -> None:
    db = str(tmp_path / "db")
    with StoreWriter(db) as w:
        f = ManifestFollower(db)
        cursor = f.subscribe()
        first = cursor.poll(lambda s: set(s.files))
        assert first is not None and first.fresh
        w.create_cf("other")
        for i in range(3):
            w.put(f"k{i}", "v" * 100)
            w.put(f"o{i}", "x", cf="other")
            w.flush()
            w.flush(cf="other")
        w.compact()
        state = f.refresh()  # capture's read
        _same_state(state, load_manifest(db))
        upd = cursor.poll(lambda s: set(s.files))  # the ops fallback's read: no second pass over the file
        assert upd is not None and not upd.fresh
        assert f.reads == _manifest_size(db), "the shared follower reads every MANIFEST byte once"
        assert upd.view == set(state.files)
        deleted = [d for e in upd.edits for d in e.deleted]
        assert deleted and all(size > 0 for _n, _lvl, _cf, size in deleted), "sizes of compacted inputs are known"
        assert cursor.poll() is None  # nothing new
        assert "other" in state.cf_names.values()


def test_late_subscriber_still_sees_every_edit_and_new_manifest_starts_over(tmp_path) -> None:
    db = str(tmp_path / "db")
    with StoreWriter(db) as w:
        w.put("a", "1")
        w.flush()
    f = ManifestFollower(db)
    f.refresh()  # capture read first
    cursor = f.subscribe()
    upd = cursor.poll()
    assert upd is not None and upd.fresh and upd.edits, "a late cursor gets the MANIFEST from its first edit"
    assert upd.offset == _manifest_size(db)
    with StoreWriter(db) as w:  # reopening writes a new MANIFEST
        w.put("b", "2")
    upd = cursor.poll()
    assert upd is not None and upd.fresh
    _same_state(f.refresh(), load_manifest(db))


def test_concurrent_consumers_share_one_state(tmp_path) -> None:
    db = str(tmp_path / "db")
    with StoreWriter(db) as w:
        f = ManifestFollower(db)
        cursor = f.subscribe()
        errors: list[BaseException] = []

        def ops() -> None:
            try:
                for _ in range(50):
                    cursor.poll(lambda s: dict(s.files))
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=ops)
        t.start()
        for i in range(5):
            w.put(f"k{i}", "v")
            w.flush()
            f.read(lambda s: dict(s.cf_names))
        t.join(30)
        assert not errors
        _same_state(f.refresh(), load_manifest(db))


def test_identity_checkpoint_reads_every_shape_written() -> None:
    ident = StoreIdentity("abc", 7, 1234)
    assert encode_identity(ident) == b'{"db_id":"abc","seq_wal":7,"ino":1234}'
    assert decode_identity(encode_identity(ident)) == ident
    assert decode_identity(b'{"db_id":"abc"}') == StoreIdentity("abc", None, 0)  # before seq_wal / ino
    assert decode_identity(b'{"db_id":null,"seq_wal":-1,"ino":0}') == StoreIdentity(None, -1, 0)
    assert decode_identity(b"[1]") is None and decode_identity(b"{") is None and decode_identity(None) is None


def test_manifest_rewritten_on_the_same_inode_is_read_again(tmp_path) -> None:
    """A store created again at the same path can get its MANIFEST name on a reused inode: the
    follower notices that the bytes it read changed and starts the file over."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with StoreWriter(a) as w:
        w.put("k", "v")
    with StoreWriter(b) as w:
        w.create_cf("other")
        for i in range(4):
            w.put(f"k{i}", "v", cf="other")
            w.flush(cf="other")
    f = ManifestFollower(a)
    assert "other" not in f.refresh().cf_names.values()
    with open(os.path.join(a, "CURRENT")) as c:
        target = os.path.join(a, c.read().strip())
    with open(os.path.join(b, "CURRENT")) as c:
        data = open(os.path.join(b, c.read().strip()), "rb").read()
    ino = os.stat(target).st_ino
    assert len(data) > os.path.getsize(target), "the new content is longer: no shrink to tell"
    with open(target, "r+b") as out:  # same inode, other content
        out.truncate(0)
        out.write(data)
    assert os.stat(target).st_ino == ino
    state = f.refresh()
    assert "other" in state.cf_names.values()
    assert state.edits == load_manifest(a).edits, "every edit of the new content, none of the old"
    _same_state(state, load_manifest(a))
