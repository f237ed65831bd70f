"""Pieces of the scale-out without a NATS server: subject tokens, message payloads, run grouping,
the journal's mirror path (append_raw / read_raw), options and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.model.config import load_config
from cdc.errors import ConfigError
from cdc.model.events import KeyChange, SyncEvent
from cdc.journal.lmdb_journal import Journal
from cdc.delivery.natsbus import build_messages, event_subject, ix_type_cf, subject_token, unpack_records
from tests.harness.daemon import ROOT


def test_subject_tokens() -> None:
    assert subject_token(None) == "~"
    assert subject_token("") == "%"
    assert subject_token("key_change") == "key_change"
    assert subject_token("app.deploy") == "app%2Edeploy"
    assert subject_token("a b*>") == "a%20b%2A%3E"
    assert subject_token("é") == "%C3%A9"
    long = subject_token("x" * 200)
    assert long.startswith("%h") and len(long) == 34
    assert event_subject("CDC", "key_change", None) == "cdc.CDC.key_change.~"
    for text in ("a.b", "*", ">", "a b", "\t"):
        tok = subject_token(text)
        assert not set(tok) & set(". *>\t")


def _journal(tmp_path, name: str = "j", **kw) -> Journal:
    return Journal(os.path.join(str(tmp_path), name), sync=False, **kw)


def _events(n: int, cf: str | None = "default") -> list:
    return [KeyChange(id=0, timestamp=1, operation="put", key=f"k{i}", cf=cf or "default", seq=i) for i in range(n)]


def test_pack_roundtrip_and_grouping(tmp_path) -> None:
    j = _journal(tmp_path)
    evs = _events(5) + [SyncEvent(id=0, timestamp=1, status="started")] + _events(3, "users")
    j.append(evs)
    items = j.read_raw(0, 100)
    assert [i[0] for i in items] == list(range(1, 10))
    msgs = build_messages("S", items)
    assert [(m[0], m[2], m[3]) for m in msgs] == [
        ("cdc.S.key_change.default", 1, 5),
        ("cdc.S.sync_event.~", 6, 6),
        ("cdc.S.key_change.users", 7, 9),
    ]
    back = [r for m in msgs for r in unpack_records(m[1])]
    assert back == [(a, bytes(b), bytes(c)) for a, b, c in items]
    assert ix_type_cf(items[5][2]) == ("sync_event", None)
    j.close()


def test_message_size_bounds(tmp_path, monkeypatch) -> None:
    import cdc.delivery.natsbus as nb

    monkeypatch.setattr(nb, "MAX_MSG_RECORDS", 4)
    j = _journal(tmp_path)
    j.append(_events(10))
    msgs = nb.build_messages("S", j.read_raw(0, 100))
    assert [(m[2], m[3]) for m in msgs] == [(1, 4), (5, 8), (9, 10)]
    j.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_unpack_never_raises_anything_but_valueerror(data: bytes) -> None:
    try:
        unpack_records(data)
    except ValueError:
        pass


def test_unpack_rejects_truncated(tmp_path) -> None:
    j = _journal(tmp_path)
    j.append(_events(3))
    payload = build_messages("S", j.read_raw(0, 10))[0][1]
    for cut in (1, 5, 12, len(payload) - 1):
        with pytest.raises(ValueError):
            unpack_records(payload[:cut])
    with pytest.raises(ValueError):
        unpack_records(payload + b"x")
    j.close()


def test_append_raw_mirror(tmp_path) -> None:
    src = _journal(tmp_path, "src")
    src.append(_events(10))
    items = src.read_raw(0, 100)
    m = _journal(tmp_path, "mirror")
    # a mirror that starts in the middle of the history: oldest = its first id
    recs, hole = m.append_raw(items[3:6])
    assert hole == 0 and [r.id for r in recs] == [4, 5, 6]
    assert (m.oldest_id, m.latest_id) == (4, 6)
    # duplicates (ids at or below latest) are skipped
    recs, hole = m.append_raw(items[4:8])
    assert [r.id for r in recs] == [7, 8] and hole == 0
    # byte-identical to the source's records
    assert [r.wire for r in m.read(0, 100)] == [r.wire for r in src.read(3, 5)]
    assert [r.frame(1) for r in m.read(0, 100)] == [r.frame(1) for r in src.read(3, 5)]
    # a jump: the ids in between are gone upstream -> older events dropped, oldest moves
    src.append(_events(5))
    more = src.read_raw(0, 100)
    recs, hole = m.append_raw(more[11:13])  # ids 12, 13 after latest 8
    assert hole == 3 and [r.id for r in recs] == [12, 13]
    assert (m.oldest_id, m.latest_id, m.count) == (12, 13, 2)
    assert [r.id for r in m.read(0, 100)] == [12, 13]
    with pytest.raises(ValueError):
        m.append_raw([more[14], more[13]])
    m.close()
    m = _journal(tmp_path, "mirror")
    assert (m.oldest_id, m.latest_id, m.count) == (12, 13, 2)
    m.close()
    src.close()


def test_config_options() -> None:
    cfg = load_config({}, {"CDC_DB": "/x", "CDC_NATS_URL": "nats://a:4222,nats://b:4222", "CDC_NATS_STREAM": "orders_1"})
    assert cfg.nats_url == ("nats://a:4222", "nats://b:4222") and cfg.nats_stream == "orders_1"
    with pytest.raises(ConfigError, match="CDC_NATS_URL"):
        load_config({}, {"CDC_DB": "/x", "CDC_NATS_URL": "http://a"})
    with pytest.raises(ConfigError, match="--nats-stream"):
        load_config({"nats_stream": "a.b"}, {"CDC_DB": "/x"})
    edge = load_config({"nats_url": ("nats://a:1",)}, {}, require_db=False)
    assert edge.db == "" and edge.nats_stream == "CDC"


def _run(args: list[str], env_extra: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    env["PYTHONPATH"] = ROOT
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cdc", *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd or ROOT)


def test_edge_cli_errors_are_one_line(tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("t0123456789\n")
    r = _run(["edge", "--tokens-file", str(tokens), "--state-dir", str(tmp_path / "s")])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--nats-url" in r.stderr, r.stderr
    r = _run(["edge", "--nats-url", "nats://127.0.0.1:1", "--state-dir", str(tmp_path / "s")])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no auth source" in r.stderr, r.stderr
    r = _run(["edge", "--nats-url", "127.0.0.1:4222", "--tokens-file", str(tokens)])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nats://" in r.stderr, r.stderr


def test_missing_nats_py_is_one_line(tmp_path) -> None:
    """Without nats-py, `cdc edge` and `cdc serve --nats-url` say which extra to install."""
    block = tmp_path / "block"
    (block / "nats").mkdir(parents=True)
    (block / "nats" / "__init__.py").write_text("raise ImportError('nats-py is not installed (test)')\n")
    tokens = tmp_path / "tokens"
    tokens.write_text("t0123456789\n")
    env = {"PYTHONPATH": f"{block}{os.pathsep}{ROOT}"}
    r = _run(["edge", "--nats-url", "nats://127.0.0.1:1", "--tokens-file", str(tokens), "--state-dir", str(tmp_path / "s")], env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "cdc: error: --nats-url needs the nats-py package: pip install 'cdc[nats]'", r.stderr
    from tests.harness.daemon import make_store

    db = make_store(str(tmp_path / "db"))
    r = _run(["serve", "--db", db, "--nats-url", "nats://127.0.0.1:1", "--tokens-file", str(tokens), "--state-dir", str(tmp_path / "s2"), "--port", "0"], env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "cdc: error: --nats-url needs the nats-py package: pip install 'cdc[nats]'", r.stderr
