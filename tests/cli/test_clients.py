"""Pure parts of the client commands: URL handling, pretty lines, publish bodies."""

from __future__ import annotations

import pytest

from cdc.errors import ConfigError
from cdc.cli.publish import build_body, publish_url
from cdc.cli.tail import TailOptions, _Tail, format_pretty, normalize_ws_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:1", "ws://h:1/ws/events"),
        ("https://h", "wss://h/ws/events"),
        ("ws://h:1/", "ws://h:1/ws/events"),
        ("h:8765", "ws://h:8765/ws/events"),
        ("wss://h/custom/path?x=1", "wss://h/custom/path?x=1"),
    ],
)
def test_normalize_ws_url(given: str, expected: str) -> None:
    assert normalize_ws_url(given) == expected


def test_normalize_rejects_other_schemes() -> None:
    with pytest.raises(ValueError):
        normalize_ws_url("ftp://h")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:1", "http://h:1/publish"),
        ("ws://h:1/ws/events", "http://h:1/publish"),
        ("wss://h/ws/events", "https://h/publish"),
        ("h:1", "http://h:1/publish"),
        ("http://h:1/publish", "http://h:1/publish"),
    ],
)
def test_publish_url(given: str, expected: str) -> None:
    assert publish_url(given) == expected


def test_build_body() -> None:
    assert build_body("sync_event", "started", '{"peer": "eu"}', ("attempt=2", "note=hello")) == {
        "type": "sync_event", "status": "started", "details": {"peer": "eu"}, "attempt": 2, "note": "hello",
    }
    for bad in ("{", "[1]"):
        with pytest.raises(ConfigError, match="--details"):
            build_body("sync_event", None, bad)
    with pytest.raises(ConfigError, match="--field"):
        build_body("sync_event", None, None, ("novalue",))


def test_tail_url_has_cursor_filters_and_no_token() -> None:
    t = _Tail(TailOptions(url="http://h:1/ws/events?x=1&since=3", token="SECRET", since=7, types=["key_change"],
                          cf=["a", "b"], prefix=["p,1", "q"], values=True), None, None)  # type: ignore[arg-type]
    url = t.url()
    assert url == "ws://h:1/ws/events?x=1&since=7&types=key_change&cf=a,b&prefix=p,1&prefix=q&values=1"
    assert "SECRET" not in url
    t.control({"type": "hello", "latest_id": 99})
    assert t.cursor == 7  # an explicit --since is kept
    t2 = _Tail(TailOptions(url="h:1", quiet=True), None, None)  # type: ignore[arg-type]
    t2.control({"type": "hello", "latest_id": 99})
    assert t2.cursor == 99 and "since=99" in t2.url()  # a drop before any event resumes from hello


def test_format_pretty() -> None:
    kc = {"id": 5, "type": "key_change", "timestamp": 0, "operation": "delete_range", "cf": "users", "key": "a",
          "end_key": "/w==", "end_key_encoding": "base64", "seq": 9}
    line = format_pretty(kc)
    assert line.startswith("#5 ") and "delete_range [users] a .. b64:/w== (seq 9)" in line
    put = {"id": 6, "type": "key_change", "timestamp": 0, "operation": "put", "key": "k", "value": "x" * 200, "seq": 1}
    assert format_pretty(put).endswith("… (seq 1)")
    comp = {"id": 7, "type": "compaction_status", "timestamp": 0, "status": "completed", "cf": "default", "job": 3,
            "details": {"output_level": 1}}
    assert "compaction_status status=completed cf=default job=3 details={\"output_level\":1}" in format_pretty(comp)


def test_every_client_option_reads_cdc_env() -> None:
    from cdc.cli.main import cli

    for name, cmd in cli.commands.items():
        if name in ("serve", "config", "edge"):
            continue  # read through cdc.config.load_config (tested in test_config)
        for p in cmd.params:
            if p.param_type_name != "option" or p.name == "help":
                continue
            long = max(p.opts, key=len).lstrip("-").replace("-", "_").upper()
            envs = [p.envvar] if isinstance(p.envvar, str) else list(p.envvar or [])
            assert f"CDC_{long}" in envs, (name, p.opts, envs)
