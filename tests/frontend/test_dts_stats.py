"""cdc.d.ts's StatsFrame / StatsCf / StatsCounts against the msgspec Structs that /schema.json
describes under ``$defs`` (``x-frames.stats``), and the stats the daemon computes against them."""

from __future__ import annotations

import msgspec
import pytest

from cdc.model.events import StatsFrame, schema_document

from .test_dts import _aliases, _interfaces, _schema_kinds, _ts_kinds

DOC = schema_document()


@pytest.mark.parametrize("name", ["StatsFrame", "StatsCf", "StatsCounts"])
def test_stats_interfaces_match_the_schema(name: str) -> None:
    ifaces, aliases = _interfaces(), _aliases()
    definition = DOC["$defs"][name]
    _, fields = ifaces[name]
    required = set(definition.get("required", []))
    for prop, spec in definition["properties"].items():
        assert prop in fields, f"{name} lacks {prop!r}"
        optional, ts_type = fields[prop]
        assert not (prop in required and optional), f"{name}.{prop} is required"
        want = {"object"} if "$ref" in spec else _schema_kinds(spec)
        assert want <= _ts_kinds(ts_type, aliases, ifaces), f"{name}.{prop}"
    assert not set(fields) - set(definition["properties"]), f"{name} declares extra fields"
    assert DOC["x-frames"]["stats"] == {"$ref": "#/$defs/StatsFrame"}


def test_computed_stats_have_the_declared_shape(daemon) -> None:  # type: ignore[no-untyped-def]
    import json
    import urllib.request

    req = urllib.request.Request(daemon.base + "/events?types=stats&timeout=3", headers={"Authorization": f"Bearer {daemon.admin_token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    msgspec.convert(body["stats"], StatsFrame)  # raises on any missing or mistyped field
