"""Start-up failures map to the right exit codes; journal_fsync is a documented option."""

from __future__ import annotations

import socket

import pytest

from cdc.daemon.app import App, serve
from cdc.model.config import OPTIONS, Config, load_config
from cdc.cli.errors import run_and_exit
from cdc.errors import ConfigError, StartupError
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
        with pytest.raises(StartupError) as ei:
            serve(cfg)
        assert ei.value.exit_code == 3 and "cannot listen" in str(ei.value)
        with pytest.raises(SystemExit) as ex:  # the CLI's one mapping: one line, exit 3
            run_and_exit(lambda: serve(cfg))
        assert ex.value.code == 3
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


def test_every_error_carries_its_exit_code():
    """errors.py owns the codes; the CLI maps them in one place (cdc.cli.errors.run_and_exit)."""
    import cdc.errors as E

    expected = {
        E.ConfigError: 2, E.StoreError: 2, E.AuthError: 2, E.StartupError: 3, E.JournalError: 3,
        E.JournalFull: 3, E.JournalLocked: 3, E.FormatError: 3, E.CdcError: 3,
    }
    for cls, code in expected.items():
        assert cls.exit_code == code, cls
    assert E.UserError("x", 130).exit_code == 130 and E.UserError("x").exit_code == 2
    assert E.JournalCorrupt("/j", "bad").exit_code == 3


def test_journal_lock_names_its_holder(tmp_path):
    """One lock per journal (cdc.journal.lock): a second holder is refused with the pid."""
    import os

    from cdc.errors import JournalLocked
    from cdc.journal.lmdb_journal import Journal

    j = Journal(str(tmp_path / "j"), sync=False)
    try:
        with pytest.raises(JournalLocked, match=rf"is in use by another cdc \(pid {os.getpid()}\)") as ei:
            Journal(str(tmp_path / "j"), sync=False)
        assert ei.value.exit_code == 3
    finally:
        j.close()
