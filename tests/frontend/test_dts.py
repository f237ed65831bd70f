"""cdc/static/cdc.d.ts against the msgspec event types (the JSON Schema served at /schema.json).

Every event type of ``cdc.events.Event`` must have a TypeScript interface with the same ``type``
tag, every field (required fields required), and a compatible type; the interface may not
declare fields the schema does not have. client.js's EVENT_TYPES must list the same tags.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from cdc.model.events import Event

STATIC = Path(__file__).resolve().parents[2] / "cdc" / "static"
DTS = (STATIC / "cdc.d.ts").read_text()

_IFACE = re.compile(r"export interface (\w+)(?: extends (\w+))?\s*\{(.*?)\n\}", re.S)
_FIELD = re.compile(r"^\s*(\w+)(\?)?:\s*(.+?);\s*$")
_ALIAS = re.compile(r"export type (\w+)\s*=\s*(.+?);", re.S)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _interfaces() -> dict[str, tuple[str | None, dict[str, tuple[bool, str]]]]:
    out = {}
    for name, base, body in _IFACE.findall(_strip_comments(DTS)):
        fields = {}
        for line in body.splitlines():
            m = _FIELD.match(line)
            if m:
                fields[m.group(1)] = (m.group(2) == "?", m.group(3).strip())
        out[name] = (base or None, fields)
    return out


def _aliases() -> dict[str, str]:
    return {n: " ".join(t.split()) for n, t in _ALIAS.findall(_strip_comments(DTS))}


def _split_union(t: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in t:
        depth += ch in "(<{[" and 1 or 0
        depth -= ch in ")>}]" and 1 or 0
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


def _ts_kinds(t: str, aliases: dict[str, str], interfaces: dict) -> set[str]:
    """JSON kinds a TypeScript type admits: string number boolean null object array."""
    kinds: set[str] = set()
    for part in _split_union(t):
        if part in ("string", "(string & {})") or re.fullmatch(r'"[^"]*"', part) or part.startswith("`"):
            kinds.add("string")
        elif part == "number":
            kinds.add("number")
        elif part == "boolean":
            kinds.add("boolean")
        elif part == "null":
            kinds.add("null")
        elif part.endswith("[]"):
            kinds.add("array")
        elif part.startswith("Record<") or part in interfaces or part.startswith("{"):
            kinds.add("object")
        elif part in aliases:
            kinds |= _ts_kinds(aliases[part], aliases, interfaces)
        else:
            raise AssertionError(f"unknown TypeScript type {part!r}")
    return kinds


def _schema_kinds(prop: dict) -> set[str]:
    if "anyOf" in prop:
        return set().union(*(_schema_kinds(p) for p in prop["anyOf"]))
    if "enum" in prop:
        return {"string" if isinstance(v, str) else "number" for v in prop["enum"]}
    t = prop.get("type")
    if t is None:  # Any
        return {"string", "number", "boolean", "null", "object", "array"}
    return {{"integer": "number"}.get(t, t)}


def _ts_literals(t: str, aliases: dict[str, str]) -> tuple[set[str], bool]:
    """String literals a TypeScript type lists, and whether it also admits any other string."""
    lits: set[str] = set()
    open_ = False
    for part in _split_union(t):
        if re.fullmatch(r'"[^"]*"', part):
            lits.add(part[1:-1])
        elif part in ("string", "(string & {})") or part.startswith("`"):
            open_ = True
        elif part in aliases:
            more, o = _ts_literals(aliases[part], aliases)
            lits |= more
            open_ |= o
    return lits, open_


def _schema_enum(prop: dict) -> set[str] | None:
    """The ``enum`` of a (possibly nullable) schema property, None when it has none."""
    if "enum" in prop:
        return set(prop["enum"])
    for alt in prop.get("anyOf", ()):
        if "enum" in alt:
            return set(alt["enum"])
    return None


SCHEMA = msgspec.json.schema(Event)
TAGS = SCHEMA["discriminator"]["mapping"]


def _event_interfaces() -> dict[str, tuple[str, dict[str, tuple[bool, str]]]]:
    ifaces = _interfaces()
    base_fields = ifaces["BaseEvent"][1]
    out = {}
    for name, (base, fields) in ifaces.items():
        if base != "BaseEvent" or "type" not in fields:
            continue
        m = re.fullmatch(r'"(\w+)"', fields["type"][1])
        if m:
            merged = {**base_fields, **fields}
            out[m.group(1)] = (name, merged)
    return out


def test_every_event_type_has_an_interface_in_the_union() -> None:
    ev = _event_interfaces()
    assert set(TAGS) <= set(ev), f"missing interfaces for {set(TAGS) - set(ev)}"
    union = _aliases()["CdcEvent"]
    members = {p.strip() for p in _split_union(union)}
    for tag in TAGS:
        assert ev[tag][0] in members, f"{ev[tag][0]} not in CdcEvent"
        assert re.search(rf"\b{tag}: {ev[tag][0]};", DTS), f"EventByType lacks {tag}"


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_fields_match_the_msgspec_schema(tag: str) -> None:
    ifaces = _interfaces()
    aliases = _aliases()
    name, fields = _event_interfaces()[tag]
    definition = SCHEMA["$defs"][TAGS[tag].rsplit("/", 1)[1]]
    required = set(definition.get("required", [])) | {"id"}  # id is always set on the wire
    for prop, spec in definition["properties"].items():
        assert prop in fields, f"{name} lacks field {prop!r}"
        optional, ts_type = fields[prop]
        if prop in required:
            assert not optional, f"{name}.{prop} is required in the schema"
        want = _schema_kinds(spec)
        have = _ts_kinds(ts_type, aliases, ifaces)
        if optional:
            have = have | {"null"} if "null" in want and "null" not in have else have
        assert want <= have | ({"null"} if optional else set()), f"{name}.{prop}: schema {want}, d.ts {have}"
        enum = _schema_enum(spec)
        if enum is not None:  # statuses, probes, operations, reasons: the same closed set
            lits, open_ = _ts_literals(ts_type, aliases)
            assert lits == enum and not open_, f"{name}.{prop}: schema enum {sorted(enum)}, d.ts {sorted(lits)}{' | string' if open_ else ''}"
    extra = set(fields) - set(definition["properties"])
    assert not extra, f"{name} declares fields the schema lacks: {extra}"


def test_statuses_are_enumerated_in_the_schema() -> None:
    # the allowed values live on the Structs (Literal), so /schema.json shows them
    defs = SCHEMA["$defs"]
    for struct, field in [
        ("CompactionStatus", "status"),
        ("FlushStatus", "status"),
        ("HealthChange", "status"),
        ("HealthChange", "probe"),
        ("SyncEvent", "status"),
        ("SnapshotEvent", "status"),
        ("StoreReset", "reason"),
        ("KeyChange", "operation"),
    ]:
        assert _schema_enum(defs[struct]["properties"][field]), f"{struct}.{field} has no enum"


def test_client_js_lists_the_same_event_types() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    js = f'import("{STATIC / "client.js"}").then(m => console.log(JSON.stringify(m.EVENT_TYPES)))'
    out = subprocess.run([node, "-e", js], capture_output=True, text=True, timeout=30, check=True).stdout
    assert set(json.loads(out)) == set(TAGS)


def test_schema_json_is_valid_and_discriminated() -> None:
    # What /schema.json serves must be the same schema this file checks against.
    assert SCHEMA["discriminator"]["propertyName"] == "type"
    assert json.loads(msgspec.json.encode(SCHEMA))


def test_daemon_serves_the_schema_and_the_static_files(daemon) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    def get(path: str) -> tuple[str, bytes]:
        with urllib.request.urlopen(daemon.base + path, timeout=5) as r:
            return r.headers.get("Content-Type", ""), r.read()

    ctype, body = get("/schema.json")
    from cdc.model.events import schema_document

    served = json.loads(body)
    assert ctype.startswith("application/json") and served == json.loads(msgspec.json.encode(schema_document()))
    assert {k: v for k, v in served.items() if k != "x-frames"}["discriminator"] == SCHEMA["discriminator"]
    ctype, body = get("/client.js")
    assert "javascript" in ctype and body == (STATIC / "client.js").read_bytes()
    assert get("/cdc.d.ts")[1] == DTS.encode()
    ctype, body = get("/")
    assert ctype.startswith("text/html") and b'from "/client.js"' in body
