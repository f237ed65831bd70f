"""Config: the Struct's Annotated metadata is the one source of help, ranges and choices."""

from __future__ import annotations

import msgspec
import pytest

from cdc.errors import ConfigError
from cdc.model.config import OPTIONS, Config, load_config


def test_options_are_derived_from_the_struct() -> None:
    schema = msgspec.json.schema(Config)["$defs"]["Config"]["properties"]
    assert list(OPTIONS) == list(Config.__struct_fields__)
    for name, opt in OPTIONS.items():
        prop = schema[name]
        assert opt.help and prop.get("description") == opt.help, name
        if opt.kind in ("int", "float"):  # the range lives on the field, /schema-visible
            assert (prop.get("minimum"), prop.get("maximum")) == (opt.lo, opt.hi), name
    assert OPTIONS["journal_fsync"].choices == ("commit", "off")
    assert OPTIONS["log_level"].choices == ("debug", "info", "warning", "error", "critical")
    assert OPTIONS["tokens_file"].kind == "path" and OPTIONS["tokens_file"].secret_path
    assert OPTIONS["port"].lo == 0 and OPTIONS["port"].hi == 65535


def test_the_struct_enforces_its_own_constraints() -> None:
    with pytest.raises(msgspec.ValidationError, match="port"):
        msgspec.convert({"db": "x", "port": 70000}, Config)
    with pytest.raises(msgspec.ValidationError, match="nats_stream"):
        msgspec.convert({"db": "x", "nats_stream": "a b"}, Config)
    with pytest.raises(msgspec.ValidationError, match="log_level"):
        msgspec.convert({"db": "x", "log_level": "loud"}, Config)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDC_PORT": "70000"}, "CDC_PORT: 70000 is out of range [0, 65535]"),
        ({"CDC_NATS_STREAM": "a.b"}, "CDC_NATS_STREAM: a stream name is 1-64 letters"),
        ({"CDC_LOG_FORMAT": "xml"}, "CDC_LOG_FORMAT: expected one of text, json, got 'xml'"),
    ],
)
def test_messages_still_name_the_option(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config({"db": "/x"}, env)
    assert str(ei.value).startswith(message)
