"""Issue 9 items 6 and 11 at the command line: a journal that cannot be trusted stops `cdc serve`
with one line and exit 3 (never SIGBUS, never a daemon that fails every replay); one tokens-file
parser; one redactor that leaves file names alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from cdc.journal.lmdb_journal import Journal

from .conftest import assert_one_line_error, run_cdc

PAGE = 4096


def _journal_with_events(state: Path, n: int = 200) -> Path:
    path = state / "journal"
    j = Journal(str(path), sync=True)
    try:
        for i in range(n // 50):
            j.append([{"type": "app.note", "n": i * 50 + k, "pad": "p" * 200} for k in range(50)])
    finally:
        j.close()
    return path


def _serve(rocks_db: Path, state: Path, secret_file: Path):
    return run_cdc("serve", "--db", str(rocks_db), "--state-dir", str(state), "--jwt-secret-file", str(secret_file), "--port", "0",
                   timeout=30)


def test_truncated_journal_is_one_line_and_exit_3_not_sigbus(rocks_db: Path, tmp_path: Path, secret_file: Path) -> None:
    state = tmp_path / "state"
    path = _journal_with_events(state)
    data = path / "data.mdb"
    size = data.stat().st_size
    assert size > 8 * PAGE
    os.truncate(data, size // 2)  # cut while stopped (a full disk, a bad copy)
    r = _serve(rocks_db, state, secret_file)
    assert_one_line_error(r, 3, f"journal {path} is damaged", "truncated", 'see README "Recovering the journal"', "move it away")
    # `cdc config` says the same without starting anything
    r = run_cdc("config", "--db", str(rocks_db), "--state-dir", str(state), "--jwt-secret-file", str(secret_file))
    assert_one_line_error(r, 3, "is damaged", "truncated")


def test_garbage_in_journal_is_one_line_and_exit_3(rocks_db: Path, tmp_path: Path, secret_file: Path) -> None:
    state = tmp_path / "state"
    path = _journal_with_events(state)
    data = path / "data.mdb"
    raw = data.read_bytes()
    pages = [i for i in range(2, len(raw) // PAGE) if b'{"id":1,"type"' in raw[i * PAGE : (i + 1) * PAGE]]
    assert pages
    with open(data, "r+b") as f:
        for i in pages:
            f.seek(i * PAGE)
            f.write(os.urandom(PAGE))
    r = _serve(rocks_db, state, secret_file)
    assert_one_line_error(r, 3, f"journal {path} is damaged", 'see README "Recovering the journal"')


def test_not_an_lmdb_file_is_one_line_and_exit_3(rocks_db: Path, tmp_path: Path, secret_file: Path) -> None:
    state = tmp_path / "state"
    (state / "journal").mkdir(parents=True)
    (state / "journal" / "data.mdb").write_bytes(b"this is not a journal\n" * 1000)
    r = _serve(rocks_db, state, secret_file)
    assert_one_line_error(r, 3, "is damaged", "no valid LMDB meta page")


def test_moved_away_journal_starts_fresh_with_a_new_epoch(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = _journal_with_events(state, 50)
    j = Journal(str(path))
    old_epoch = j.epoch
    j.close()
    os.rename(path, tmp_path / "journal.damaged")  # the README's recovery step
    j = Journal(str(path))
    try:
        assert j.epoch != old_epoch and j.latest_id == 0
        assert j.replaced is not None and j.replaced["previous_epoch"] == old_epoch and j.replaced["previous_latest_id"] == 50
    finally:
        j.close()


# --------------------------------------------------------------------------- item 11


def test_error_paths_ending_in_secret_are_not_redacted(tmp_path: Path) -> None:
    r = run_cdc("token", "--secret-file", "jwt-secret", cwd=str(tmp_path))
    assert_one_line_error(r, 2, "--secret-file: jwt-secret: no such file")
    assert "REDACTED" not in r.err
    missing = tmp_path / "etc" / "client-secret"
    r = run_cdc("serve", "--db", str(tmp_path), "--jwt-secret-file", str(missing))
    assert "REDACTED" not in r.err and r.code == 2, r.err


def test_token_with_hash_is_one_token_for_the_check_and_the_authenticator(tmp_path: Path, rocks_db: Path) -> None:
    from cdc.delivery.auth import Authenticator, parse_tokens
    from cdc.errors import AuthError

    tokens = tmp_path / "tokens"
    tokens.write_text("# ci tokens\n  ci#runner#7f3a2b  \nother-token-0001   # the dashboard\n")
    assert parse_tokens(tokens.read_text()) == ["ci#runner#7f3a2b", "other-token-0001"]
    r = run_cdc("config", "--db", str(rocks_db), "--tokens-file", str(tokens), "--state-dir", str(tmp_path / "s"))
    assert r.code == 0, r.err
    a = Authenticator(str(tokens))
    assert a.verify("ci#runner#7f3a2b") and a.verify("other-token-0001")
    for wrong in ("ci", "ci#runner", "other-token-0001   # the dashboard"):
        try:
            a.verify(wrong)
        except AuthError:
            continue
        raise AssertionError(f"{wrong!r} accepted")


def test_tail_sends_the_epoch_with_its_cursor_and_reports_another_journal() -> None:
    import io

    from cdc.cli.tail import TailOptions, _Tail

    err = io.StringIO()
    t = _Tail(TailOptions(url="http://127.0.0.1:1", since=40, epoch="aaaa"), io.StringIO(), err)
    assert "since=40&epoch=aaaa" in t.url()
    t.control({"type": "hello", "latest_id": 3, "epoch": "bbbb"})
    t.control({"type": "reset", "reason": "epoch_changed", "latest_id": 3, "epoch": "bbbb"})
    assert "since=3&epoch=bbbb" in t.url()  # a reconnect resumes in the new journal
    assert "epoch bbbb" in err.getvalue() and "another journal" in err.getvalue()
