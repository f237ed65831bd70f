"""Every user mistake: one line on stderr, the documented exit code, never a traceback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, run_cdc


@pytest.fixture
def auth_env(secret_file: Path) -> dict[str, str]:
    return {"CDC_JWT_SECRET_FILE": str(secret_file)}


def serve(*args: str, env: dict[str, str] | None = None):
    return run_cdc("serve", *args, env=env)


def test_missing_db_option(tmp_path: Path) -> None:
    assert_one_line_error(serve(), 2, "--db is required")


def test_missing_db_dir(tmp_path: Path, auth_env) -> None:
    assert_one_line_error(serve("--db", str(tmp_path / "nope"), env=auth_env), 2, "--db", "no such directory")


def test_db_is_a_file(tmp_path: Path, auth_env) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(serve("--db", str(f), env=auth_env), 2, "--db", "not a directory")


def test_db_not_a_store(tmp_path: Path, auth_env) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_line_error(serve("--db", str(tmp_path / "empty"), env=auth_env), 2, "not a RocksDB or LevelDB")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_db_unreadable(tmp_path: Path, rocks_db: Path, auth_env) -> None:  # pragma: no cover - non-root only
    rocks_db.chmod(0)
    try:
        assert_one_line_error(serve("--db", str(rocks_db), env=auth_env), 2, "--db")
    finally:
        rocks_db.chmod(0o755)


def test_no_auth_source(rocks_db: Path, tmp_path: Path) -> None:
    assert_one_line_error(serve("--db", str(rocks_db), "--state-dir", str(tmp_path / "s")), 2, "no auth source", "--insecure-no-auth")


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "no such file"), ("# only a comment\n\n", "contains no token"), ("dir", "is a directory"), (b"\xff\xfe\x00", "not UTF-8")],
)
def test_bad_tokens_file(rocks_db: Path, tmp_path: Path, content, needle: str) -> None:
    p = tmp_path / "tokens"
    if content == "dir":
        p.mkdir()
    elif isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    r = serve("--db", str(rocks_db), "--tokens-file", str(p), "--state-dir", str(tmp_path / "s"))
    assert_one_line_error(r, 2, "--tokens-file", needle)


def test_empty_jwt_secret(rocks_db: Path, tmp_path: Path) -> None:
    p = tmp_path / "secret"
    p.write_text("  \n")
    r = serve("--db", str(rocks_db), "--jwt-secret-file", str(p), "--state-dir", str(tmp_path / "s"))
    assert_one_line_error(r, 2, "--jwt-secret-file", "empty")


def test_token_contents_never_in_errors(rocks_db: Path, tmp_path: Path) -> None:
    p = tmp_path / "tokens"
    p.write_text("good-token\nbad token-with-space-SECRETVALUE\n")
    r = serve("--db", str(rocks_db), "--tokens-file", str(p), "--state-dir", str(tmp_path / "s"))
    assert_one_line_error(r, 2, "token #2 contains whitespace")
    assert "SECRETVALUE" not in r.err


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--port", "99999"], {}, "--port: 99999 is out of range"),
        (["--port", "http"], {}, "--port: expected an integer"),
        ([], {"CDC_PORT": "eighty"}, "CDC_PORT: expected an integer"),
        ([], {"CDC_HEARTBEAT_MS": "5"}, "CDC_HEARTBEAT_MS: 5 is out of range"),
        (["--log-format", "xml"], {}, "--log-format: expected one of text, json"),
        ([], {"CDC_INSECURE_NO_AUTH": "perhaps"}, "CDC_INSECURE_NO_AUTH"),
    ],
)
def test_bad_config_values(rocks_db: Path, auth_env, args, env, needle: str) -> None:
    assert_one_line_error(serve("--db", str(rocks_db), *args, env={**auth_env, **env}), 2, needle)


def test_bad_toml(rocks_db: Path, tmp_path: Path, auth_env) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [\n")
    assert_one_line_error(serve("--config", str(bad), env=auth_env), 2, "invalid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(f'db = "{rocks_db}"\nprot = 1\n')
    assert_one_line_error(serve("--config", str(unknown), env=auth_env), 2, "unknown option 'prot'")
    assert_one_line_error(serve(env={**auth_env, "CDC_CONFIG": str(tmp_path / "missing.toml")}), 2, "--config", "no such file")


def test_port_in_use(rocks_db: Path, tmp_path: Path, auth_env) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = serve("--db", str(rocks_db), "--port", str(port), "--state-dir", str(tmp_path / "s"), env=auth_env)
    assert_one_line_error(r, 3, f"127.0.0.1:{port} is already in use")


def test_state_dir_not_writable(rocks_db: Path, tmp_path: Path, auth_env) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    r = serve("--db", str(rocks_db), "--state-dir", str(f / "state"), env=auth_env)
    assert_one_line_error(r, 2, "--state-dir", "cannot create")
    r = serve("--db", str(rocks_db), "--state-dir", str(f), env=auth_env)
    assert_one_line_error(r, 2, "--state-dir", "not a directory")


def test_state_dir_read_only_fs(rocks_db: Path, auth_env) -> None:
    if os.access("/proc/sys", os.W_OK) and os.geteuid() != 0:
        pytest.skip("unexpected writable /proc/sys")
    r = serve("--db", str(rocks_db), "--state-dir", "/proc/cdc-state", env=auth_env)
    assert_one_line_error(r, 2, "--state-dir")


def test_usage_errors() -> None:
    assert_one_line_error(run_cdc("serve", "--bogus"), 2, "No such option", "cdc serve --help")
    assert_one_line_error(run_cdc("frobnicate"), 2, "No such command")
    assert_one_line_error(run_cdc("tail"), 2, "Missing argument")
    assert_one_line_error(run_cdc("token"), 2, "--secret-file")


def test_client_command_errors(tmp_path: Path, secret_file: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, not listening: connection refused
        assert_one_line_error(run_cdc("tail", f"http://127.0.0.1:{dead}"), 3, "cannot connect", "connection refused")
        assert_one_line_error(run_cdc("publish", f"127.0.0.1:{dead}", "--type", "sync_event"), 3, "cannot reach")
    assert_one_line_error(run_cdc("tail", "ftp://example"), 2, "not an http(s):// or ws(s):// URL")
    assert_one_line_error(run_cdc("publish", "http://x", "--type", "sync_event", "--details", "{nope"), 2, "--details: invalid JSON")
    assert_one_line_error(run_cdc("publish", "http://x", "--type", "sync_event", "--details", "[1]"), 2, "--details: must be a JSON object")
    assert_one_line_error(run_cdc("tail", "http://x", "--token-file", str(tmp_path / "none")), 2, "--token-file", "no such file")
    assert_one_line_error(run_cdc("token", "--secret-file", str(tmp_path / "none")), 2, "--secret-file", "no such file")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert_one_line_error(run_cdc("token", "--secret-file", str(empty)), 2, "empty")
    assert_one_line_error(run_cdc("token", "--secret-file", str(secret_file), "--ttl", "0"), 2, "--ttl")


def test_dump_wal_missing_path(tmp_path: Path) -> None:
    r = run_cdc("dump-wal", str(tmp_path / "nothing"))
    assert r.code != 0 and "Traceback" not in r.err
    assert len([ln for ln in r.err.splitlines() if ln.strip()]) == 1


def test_demo_port_in_use_and_missing_rocksdict(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_one_line_error(run_cdc("demo", "--port", str(port), "--dir", str(tmp_path)), 3, "already in use", "--port")
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "rocksdict.py").write_text("raise ImportError('rocksdict is not installed')\n")
    r = run_cdc("demo", "--dir", str(tmp_path), env={"PYTHONPATH": str(stub)})
    assert_one_line_error(r, 2, "pip install 'cdc[demo]'")
    assert not list(tmp_path.glob("cdc-demo-*"))


def test_unexpected_error_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_env) -> None:
    import cdc.cli.tail
    from cdc import cli

    def boom(opts):
        raise RuntimeError("kaboom Bearer abc.def")

    monkeypatch.setattr(cdc.cli.tail, "run_tail", boom)
    with pytest.raises(SystemExit) as ei:
        cli.main(["tail", "http://127.0.0.1:1"])
    assert ei.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: kaboom" in err and "abc.def" not in err and "Traceback" not in err


def test_second_daemon_on_the_same_state_dir_is_refused(serve_factory, store, tmp_path: Path, secret_file: Path) -> None:
    d = serve_factory()
    r = serve("--db", store.path, "--state-dir", str(tmp_path / "state"), "--port", "0",
              env={"CDC_JWT_SECRET_FILE": str(secret_file)})
    assert_one_line_error(r, 3, "is in use by another cdc", f"pid {d.proc.pid}")
    assert d.proc.poll() is None
