"""Configuration loading: precedence, TOML spelling, validation messages, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.model.config import OPTIONS, Config, effective_config, load_config, read_toml, render_effective
from cdc.errors import ConfigError


def test_defaults_and_state_directory() -> None:
    c = load_config({"db": "/srv/db"}, {}, None)
    assert c.state_dir == "./cdc-state" and c.port == 8765 and c.host == "127.0.0.1"
    assert c.effective_wal_dir == "/srv/db"
    c = load_config({"db": "/srv/db"}, {"STATE_DIRECTORY": "/var/lib/cdc:/var/lib/other"}, None)
    assert c.state_dir == "/var/lib/cdc"


def test_precedence_cli_env_toml_default(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('db = "/from/toml"\nport = 1111\nhost = "10.0.0.1"\nheartbeat_ms = 2000\nstate-dir = "/toml/state"\n')
    env = {"CDC_PORT": "2222", "CDC_HOST": "10.0.0.2", "STATE_DIRECTORY": "/sd"}
    c = load_config({"port": 3333}, env, str(toml))
    assert c.port == 3333  # CLI beats env and file
    assert c.host == "10.0.0.2"  # env beats file
    assert c.heartbeat_ms == 2000  # file beats default
    assert c.db == "/from/toml"
    assert c.state_dir == "/toml/state"  # explicit state-dir beats $STATE_DIRECTORY
    assert c.max_subscribers == Config(db="x").max_subscribers  # default


def test_toml_dashes_underscores_and_tables(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[cdc]\ndb = "/d"\nallow-origin = ["https://a", "https://b"]\ninsecure_no_auth = true\n')
    c = load_config({}, {}, str(p))
    assert c.allow_origin == ("https://a", "https://b") and c.insecure_no_auth is True


def test_env_parsing() -> None:
    env = {
        "CDC_DB": "/d",
        "CDC_ALLOW_ORIGIN": "https://a, https://b https://c",
        "CDC_INSECURE_NO_AUTH": "yes",
        "CDC_JOURNAL_MAP_SIZE": "0x100000",
        "CDC_RETENTION_AGE_S": "60.5",
        "CDC_LOG_FORMAT": "JSON",
        "CDC_WAL_DIR": "",  # empty = unset
    }
    c = load_config({}, env, None)
    assert c.allow_origin == ("https://a", "https://b", "https://c")
    assert c.insecure_no_auth is True and c.journal_map_size == 1 << 20 and c.retention_age_s == 60.5
    assert c.log_format == "json" and c.wal_dir is None


@pytest.mark.parametrize(
    ("cli", "env", "needle"),
    [
        ({}, {}, "--db is required"),
        ({"port": 70000}, {}, "--port: 70000 is out of range"),
        ({}, {"CDC_PORT": "http"}, "CDC_PORT: expected an integer"),
        ({}, {"CDC_INSECURE_NO_AUTH": "maybe"}, "CDC_INSECURE_NO_AUTH: expected true/false"),
        ({"log_format": "xml"}, {}, "--log-format: expected one of text, json"),
        ({"heartbeat_ms": 1}, {}, "--heartbeat-ms: 1 is out of range"),
        ({"retention_age_s": float("nan")}, {}, "--retention-age-s: expected a finite number"),
        ({"port": True}, {}, "--port: expected a number"),
        ({"db": ""}, {}, "--db: empty path"),
        ({"allow_origin": ("a b",)}, {}, "must not contain whitespace"),
    ],
)
def test_validation_messages_name_the_option(cli: dict, env: dict, needle: str) -> None:
    cli = {"db": "/d", **cli} if "db" not in cli and needle != "--db is required" else cli
    with pytest.raises(ConfigError) as ei:
        load_config(cli, env, None)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg


def test_toml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 3\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config({"db": "/d"}, {}, str(bad))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 3\n")
    with pytest.raises(ConfigError, match="unknown option 'prot'"):
        read_toml(str(unknown))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('port = "eighty"\n')
    with pytest.raises(ConfigError, match=r"wrong.toml: port: expected a number"):
        load_config({"db": "/d"}, {}, str(wrong))
    with pytest.raises(ConfigError, match="no such file"):
        load_config({"db": "/d"}, {}, str(tmp_path / "missing.toml"))


def test_every_field_has_an_option_and_example_toml_is_complete() -> None:
    assert set(OPTIONS) == set(Config.__struct_fields__)
    example = read_toml(str(Path(__file__).resolve().parents[2] / "systemd" / "cdc.toml"))
    # the example documents every option except the commented-out paths and auth alternatives
    commented = {"wal_dir", "snapshots_dir", "state_dir", "tokens_file", "insecure_no_auth", "nats_url", "nats_creds"}
    assert set(example) | commented == set(OPTIONS)


def test_effective_config_shows_secret_paths_never_contents(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("super-secret-value-xyz")
    c = load_config({"db": "/d", "jwt_secret_file": str(secret)}, {}, None)
    text = render_effective(c)
    assert str(secret) in text and "super-secret-value-xyz" not in text
    assert effective_config(c)["wal_dir"] == "/d"
    # the rendering is valid TOML that loads back to the same config
    back = tmp_path / "back.toml"
    back.write_text(text)
    assert load_config({}, {}, str(back)) == load_config({"wal_dir": "/d", "db": "/d", "jwt_secret_file": str(secret)}, {}, None)
