"""Start-up failures map to the right exit codes; journal_fsync is a documented option."""

from __future__ import annotations

import socket

import pytest

from cdc.daemon.app import App, serve
from cdc.model.config import OPTIONS, Config, load_config
from cdc.errors import ConfigError
from tests.harness.writers import StoreWriter


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def test_port_in_use_is_a_startup_failure_exit_3(tmp_path, capsys):
    db = str(tmp_path / "db")
    with StoreWriter(db) as w:
        w.put("a", "1")
    s = _busy_port()
    try:
        cfg = Config(db=db, state_dir=str(tmp_path / "st"), port=s.getsockname()[1], insecure_no_auth=True)
        assert serve(cfg) == 3
        err = capsys.readouterr().err
        assert "cannot listen" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    finally:
        s.close()


async def test_second_app_on_one_state_dir_fails_clearly(tmp_path):
    import asyncio

    db = str(tmp_path / "db")
    with StoreWriter(db) as w:
        w.put("a", "1")
    cfg = Config(db=db, state_dir=str(tmp_path / "st"), port=0, insecure_no_auth=True)
    a = App(cfg, components=[])
    started = asyncio.Event()
    task = asyncio.create_task(a.run(started))
    await asyncio.wait_for(started.wait(), 10)
    try:
        from cdc.errors import JournalError

        with pytest.raises(JournalError, match="in use"):
            await App(cfg, components=[]).run()
    finally:
        a.stop.set()
        await asyncio.wait_for(task, 10)


def test_journal_fsync_option():
    assert OPTIONS["journal_fsync"].choices == ("commit", "off")
    assert Config(db="x").journal_fsync == "commit"
    assert App(Config(db="x", journal_fsync="off")).journal_sync is False
    assert App(Config(db="x")).journal_sync is True
    assert Config(db="x").ops_manifest_grace_s == 11.0
    with pytest.raises(ConfigError):
        load_config({"db": "x", "journal_fsync": "sometimes"}, {})
