"""The wire format: the one owner of how events and control frames look on a connection.

Rule: pure (msgspec + stdlib only, no I/O).

- :class:`WireFormat`: the four encodings of an event (JSON or msgpack, with or without the
  value); a subscriber's format is ``WireFormat.of(msgpack, values)``.
- :class:`SubState`: where a subscriber is (replaying the journal, live, closed).
- :class:`Record`: one journaled event, its frames per format computed at most once.
- :func:`encode_event` (events as msgspec encodes them) and :class:`PreEncoded` (what it
  returns); capture's hot path builds the same bytes by hand from :data:`PUT_HEAD` /
  :data:`PUT_BODY` / :func:`marks_tail` (tests/capture/test_capture_fastpath.py checks they
  are byte-identical to :func:`encode_event`, with hypothesis).
- :func:`build_frames`, :func:`control_frame`: frames for a connection.
- :data:`ClientMessage`: what a client may send on a WebSocket (``ping``, ``subscribe``,
  ``auth``), a tagged union decoded by :func:`decode_client_message`.
"""

from __future__ import annotations

import re
import struct
from enum import IntEnum
from typing import Annotated, Any, NamedTuple, Union

import msgspec

from cdc.model.events import CUSTOM_TYPE_PATTERN, EVENT_TYPES, Event, KeyChange, decode_bytes

__all__ = [
    "WireFormat",
    "SubState",
    "Record",
    "PreEncoded",
    "encode_event",
    "PUT_HEAD",
    "PUT_BODY",
    "VALUE_KEY",
    "marks_tail",
    "build_frames",
    "control_frame",
    "Ping",
    "Subscribe",
    "Auth",
    "ClientMessage",
    "ClientMessageError",
    "decode_client_message",
    "MAX_ID",
    "MAX_REF_CHARS",
]


class WireFormat(IntEnum):
    """An event's encoding on a connection (also the index of :class:`Record`'s frame cache)."""

    JSON = 0
    JSON_VALUES = 1
    MSGPACK = 2
    MSGPACK_VALUES = 3

    @staticmethod
    def of(msgpack: bool, values: bool) -> WireFormat:
        if msgpack:
            return WireFormat.MSGPACK_VALUES if values else WireFormat.MSGPACK
        return WireFormat.JSON_VALUES if values else WireFormat.JSON

    @property
    def values(self) -> bool:
        """Frames carry ``value`` / ``value_encoding``."""
        return self in (WireFormat.JSON_VALUES, WireFormat.MSGPACK_VALUES)

    @property
    def msgpack(self) -> bool:
        return self >= WireFormat.MSGPACK


# plain ints for the per-record hot paths (an enum attribute lookup costs more than the compare)
_JSON, _JSON_VALUES, _MSGPACK = int(WireFormat.JSON), int(WireFormat.JSON_VALUES), int(WireFormat.MSGPACK)


class SubState(IntEnum):
    """A subscriber's state: replaying the journal, live (fan-out reaches it), closed."""

    REPLAY = 0
    LIVE = 1
    CLOSED = 2


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_custom_type = re.compile(CUSTOM_TYPE_PATTERN)

VALUE_KEY = b',"value":'
"""The value fragment's start (``,"value":`` then the JSON string)."""
_VALUE_ENC_KEY = b',"value_encoding":'


class Record(msgspec.Struct, gc=False):
    """One journaled event, ready to send.

    ``wire`` is the JSON object with ``id`` and without the value; ``value`` is the JSON
    fragment of the value (``,"value":"..."[,"value_encoding":"base64"]``) or ``b""``.
    Encodings per wire format are computed at most once (lazily) and cached in ``_cache``.
    A msgspec Struct (C-level construction, no GC tracking: it holds only str/bytes/int/None
    and the cache list of bytes, so it can never be part of a reference cycle).
    """

    id: int
    type: str
    cf: str | None
    key: bytes | None
    end_key: bytes | None
    ts: int
    wire: bytes
    value: bytes
    _cache: list[bytes | None] | None = None

    def frame(self, fmt: int) -> bytes:
        """Encoded event in a :class:`WireFormat` (cached)."""
        if fmt == _JSON:
            return self.wire
        cache = self._cache
        if cache is None:
            cache = self._cache = [None, None, None, None]
        data = cache[fmt]
        if data is None:
            if fmt == _JSON_VALUES:
                data = self.wire[:-1] + self.value + b"}" if self.value else self.wire
            elif fmt == _MSGPACK:
                data = _msgpack_encoder.encode(_json_decoder.decode(self.wire))
            else:
                data = _msgpack_encoder.encode(_json_decoder.decode(self.frame(_JSON_VALUES)))
            cache[fmt] = data
        return data

    def __repr__(self) -> str:
        return f"Record({self.id}, {self.type!r}, {self.wire[:80]!r})"


class PreEncoded(NamedTuple):
    """An event split for the journal: accepted by ``Journal.append`` next to Structs and dicts.

    Invariant: identical to what :func:`encode_event` gives for the equivalent Struct (capture
    builds these by hand on its hot path; tests compare both). A NamedTuple so the journal's
    commit loop unpacks it like a tuple; the hot path builds it with ``tuple.__new__``.
    """

    core: bytes
    """The event's JSON object without ``id`` and without ``value``/``value_encoding``
    (starting ``{"type":...``)."""
    value: bytes
    """The value fragment (``,"value":...`` or ``b""``)."""
    type: str
    cf: str | None
    key: bytes | None
    end_key: bytes | None


_TAG_OF: dict[type, str] = {}


def encode_event(ev: Event | dict[str, Any], now_ms: int) -> PreEncoded:
    """Split an event into (core JSON without id/value, value fragment, type, cf, key, end_key).

    Raises:
        ValueError: a dict event without a valid dotted ``type`` (or a reserved one).
    """
    if isinstance(ev, dict):
        etype = ev.get("type")
        if not isinstance(etype, str) or not (etype in EVENT_TYPES or _custom_type.match(etype)):
            raise ValueError(f"invalid event type {etype!r}")
        body = {"type": etype}
        for k, v in ev.items():
            if k not in ("type", "id", "value", "value_encoding"):
                body[k] = v
        if not isinstance(body.get("timestamp"), int):
            body["timestamp"] = now_ms
        core = _json_encoder.encode(body)
        value = b""
        if "value" in ev:
            value = VALUE_KEY + _json_encoder.encode(ev["value"])
            if "value_encoding" in ev:
                value += _VALUE_ENC_KEY + _json_encoder.encode(ev["value_encoding"])
        cf = body.get("cf")
        return PreEncoded(core, value, etype, cf if isinstance(cf, str) else None, None, None)
    if ev.id:
        ev = msgspec.structs.replace(ev, id=0)
    cls = type(ev)
    etype = _TAG_OF.get(cls)
    if etype is None:
        etype = _TAG_OF[cls] = cls.__struct_config__.tag  # type: ignore[attr-defined]
    if isinstance(ev, KeyChange):
        key = ev.key.encode() if ev.key_encoding is None else decode_bytes(ev.key, ev.key_encoding)
        end_key = decode_bytes(ev.end_key, ev.end_key_encoding) if ev.end_key is not None else None
        full = _json_encoder.encode(ev)
        if ev.value is not None:
            # value / value_encoding are KeyChange's last fields, so they end the JSON object; an
            # unescaped `,"value":` cannot occur inside a JSON string, so rfind finds the field.
            i = full.rfind(VALUE_KEY)
            return PreEncoded(full[:i] + b"}", full[i:-1], etype, ev.cf, key, end_key)
        return PreEncoded(full, b"", etype, ev.cf, key, end_key)
    cf = ev.cf if isinstance(ev, _CF_EVENTS) else None
    return PreEncoded(_json_encoder.encode(ev), b"", etype, cf, None, None)


_CF_EVENTS = tuple(cls for cls in EVENT_TYPES.values() if "cf" in cls.__struct_fields__)  # type: ignore[attr-defined]
"""The event Structs with a ``cf`` field (the journal indexes it for the cf filter)."""

# Capture's hot path (a put with UTF-8 key and value in a known cf) writes the KeyChange JSON
# by hand, in msgspec's field order (KeyChange's declaration order, defaults omitted):
PUT_HEAD = b'{"type":"key_change","timestamp":%d,"operation":"put","key":'
"""``% timestamp_ms``: the start of a put's core, up to the key."""
PUT_BODY = b'%b%b,"cf":%b,"seq":%d%b'
"""``% (head, json(key), json(cf), seq, marks_tail(...))``: the whole core."""


def marks_tail(origin: str | None, batch_seq: int | None, batch_count: int | None) -> bytes:
    """The end of a hand-encoded key_change after ``seq``: as msgspec encodes these fields."""
    out = b""
    if origin is not None:
        out += b',"origin":' + _json_encoder.encode(origin)
    if batch_seq is not None:
        out += b',"batch_seq":%d,"batch_count":%d' % (batch_seq, batch_count)
    return out + b"}"


# --------------------------------------------------------------------------- frames

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def _msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + _U16.pack(n)
    return b"\xdd" + _U32.pack(n)


def build_frames(records: list[Record], fmt: int, batch: bool) -> list[bytes]:
    """Frames for ``records`` in a wire format: one per event, or one array when ``batch``."""
    if not batch:
        if fmt == _JSON:
            return [r.wire for r in records]
        return [r.frame(fmt) for r in records]
    if len(records) == 1:
        return [records[0].frame(fmt)]
    if fmt < _MSGPACK:
        return [b"[" + b",".join([r.frame(fmt) for r in records]) + b"]"]
    return [_msgpack_array_header(len(records)) + b"".join([r.frame(fmt) for r in records])]


def control_frame(body: dict[str, Any], msgpack: bool) -> bytes:
    """Encode a control frame (hello, heartbeat, pong, error, subscribed, reset...).

    Never raises: a body that cannot be encoded (an int msgpack cannot hold, ...) becomes an
    ``error`` frame of the same type family, so a peer's input never closes a connection with 1011.
    """
    try:
        return _msgpack_encoder.encode(body) if msgpack else _json_encoder.encode(body)
    except (msgspec.EncodeError, OverflowError, TypeError, ValueError):
        err = {"type": "error", "error": f"{str(body.get('type'))[:40]} frame could not be encoded"}
        return _msgpack_encoder.encode(err) if msgpack else _json_encoder.encode(err)


# --------------------------------------------------------------------------- client messages

MAX_ID = (1 << 63) - 1
"""Largest id / ``since`` (ids are int64 on the wire; msgpack cannot carry more)."""
MAX_REF_CHARS = 256
"""A client ``ref`` is echoed only when every format can carry it: an int64 or a short string."""

Ref = Union[bool, Annotated[int, msgspec.Meta(ge=-MAX_ID - 1, le=MAX_ID)], Annotated[str, msgspec.Meta(max_length=MAX_REF_CHARS)], None]


class _Envelope(msgspec.Struct):
    """What every client message has: an ``op`` string and an optional ``ref`` echoed back."""

    op: str
    ref: Ref = None


_Names = Union[list[str], str, None, msgspec.UnsetType]
"""A filter list in a message: absent (keep the current one), null (everything), a string or a list."""


class _Message(msgspec.Struct, tag_field="op", kw_only=True):
    ref: Ref = None


class Ping(_Message, tag="ping"):
    """``{"op":"ping"}`` -> ``pong`` with the latest id."""


class Subscribe(_Message, tag="subscribe"):
    """``{"op":"subscribe", ...}``: change the filter (absent fields keep their value)."""

    types: _Names = msgspec.UNSET
    cf: _Names = msgspec.UNSET
    prefix: _Names = msgspec.UNSET
    key: _Names = msgspec.UNSET
    values: bool | None = None


class Auth(_Message, tag="auth"):
    """``{"op":"auth","token":...}``: re-authenticate on the open connection."""

    token: str


ClientMessage = Union[Ping, Subscribe, Auth]


class ClientMessageError(ValueError):
    """A client message msgspec refused; ``op`` (when known) goes into the error frame."""

    def __init__(self, text: str, op: str | None = None) -> None:
        super().__init__(text)
        self.op = op


_FIELD_ERRORS = {
    "types": "types must be a list of strings",
    "cf": "cf must be a list of strings",
    "prefix": "prefix must be a list of strings",
    "key": "key must be a list of strings",
    "values": "values must be a boolean",
    "token": "auth needs a token string",
}


def decode_client_message(m: Any) -> ClientMessage:
    """The client message in ``m`` (decoded JSON or msgpack), checked by msgspec.

    Raises:
        ClientMessageError: with the error frame's text (and the op, once it is known).
    """
    try:
        env = msgspec.convert(m, _Envelope)
    except msgspec.ValidationError as exc:
        if "`$.ref`" in str(exc) and isinstance(m, dict) and isinstance(m.get("op"), str):
            raise ClientMessageError(f"ref must be an int64 or a string of at most {MAX_REF_CHARS} characters", m["op"][:40]) from None
        raise ClientMessageError('message must be an object with an "op" string') from None
    op = env.op[:40]
    try:
        return msgspec.convert(m, ClientMessage)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "`$.op`" in text:
            raise ClientMessageError(f"unknown op {op!r}", op) from None
        if "`token`" in text:
            raise ClientMessageError(_FIELD_ERRORS["token"], op) from None
        field = text.rsplit("at `$.", 1)[-1].split("[", 1)[0].rstrip("`") if "at `$." in text else ""
        raise ClientMessageError(_FIELD_ERRORS.get(field, f"invalid {op} message: {text}"), op) from None
