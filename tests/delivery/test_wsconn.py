"""``cdc.delivery.wsconn.write_frames``: frames encoded once per list and written straight into
the transport (the fan-out's hot path), byte-identical to what websockets itself would send.
Real ``websockets`` servers and clients on loopback, no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import serve
from websockets.frames import Frame, Opcode

from cdc.delivery import wsconn
from cdc.delivery.wsconn import encode_frames, write_frames
from tests.harness.waiting import wait_for


def ws_encoding(frames: list[bytes], text: bool) -> bytes:
    """What websockets' protocol writes for these messages on a server without extensions."""
    return b"".join(Frame(Opcode.TEXT if text else Opcode.BINARY, f).serialize(mask=False, extensions=[]) for f in frames)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
@pytest.mark.parametrize("text", [True, False])
def test_encode_frames_matches_websockets_at_length_boundaries(n: int, text: bool) -> None:
    frames = [b"x" * n, b"[" + b"y" * n + b"]"]
    assert encode_frames(frames, text) == ws_encoding(frames, text)


@given(st.lists(st.binary(max_size=300), max_size=8), st.booleans())
def test_encode_frames_matches_websockets(frames: list[bytes], text: bool) -> None:
    assert encode_frames(frames, text) == ws_encoding(frames, text)


class Rig:
    """A bare websockets server keeping its connections; ``compression`` as given to ``serve``."""

    def __init__(self) -> None:
        self.conns: list[Any] = []

    async def handler(self, conn: Any) -> None:
        self.conns.append(conn)
        await conn.wait_closed()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    yield Rig()


async def recv_all(ws: Any, n: int) -> list[Any]:
    return [await asyncio.wait_for(ws.recv(), 5) for _ in range(n)]


async def test_one_list_to_many_connections_is_encoded_once_and_received_intact(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    serialize = Frame.serialize

    def counting(self: Frame, *a: Any, **k: Any) -> bytes:
        calls[0] += 1
        return serialize(self, *a, **k)

    async with serve(rig.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        clients = [await websockets.connect(f"ws://127.0.0.1:{port}/", compression=None) for _ in range(5)]
        try:
            await wait_for(lambda: len(rig.conns) == 5, timeout=5)
            frames = [b'{"id":1}', b"[" + b'{"id":2},' * 20_000 + b'{"id":3}]', "é".encode()]
            monkeypatch.setattr(Frame, "serialize", counting)
            for conn in rig.conns:
                assert write_frames(conn, frames, True)
            monkeypatch.setattr(Frame, "serialize", serialize)
            # no per-connection serialization by websockets on the fast path
            assert calls[0] == 0
            for c in clients:
                assert await recv_all(c, 3) == [f.decode() for f in frames]
            # binary frames, and the cache must not hand a text list's bytes to a binary write
            for conn in rig.conns:
                assert write_frames(conn, frames, False)
            for c in clients:
                assert await recv_all(c, 3) == frames
        finally:
            for c in clients:
                await c.close()


@pytest.mark.parametrize("n", [65_535, 65_536, 1_500_000])
async def test_single_big_frame_received_intact(rig: Rig, n: int) -> None:
    async with serve(rig.handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None) as c:
            await wait_for(lambda: len(rig.conns) == 1, timeout=5)
            big = b"[" + b"z" * (n - 2) + b"]"
            assert write_frames(rig.conns[0], [big], True)
            assert write_frames(rig.conns[0], [big], False)
            assert write_frames(rig.conns[0], [b'"next"'], True)
            assert await recv_all(c, 3) == [big.decode(), big, '"next"']


async def test_queued_protocol_bytes_go_first_and_closed_connections_refuse(rig: Rig) -> None:
    async with serve(rig.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/", compression=None) as c:
            await wait_for(lambda: len(rig.conns) == 1, timeout=5)
            conn = rig.conns[0]
            # something websockets queued but did not write yet (e.g. a pong) is written before the frames
            conn.protocol.send_text(b'"queued"')
            assert write_frames(conn, [b'"after"'], True)
            assert await recv_all(c, 2) == ['"queued"', '"after"']
        await wait_for(lambda: conn.protocol.state.name == "CLOSED", timeout=5)
        assert not write_frames(conn, [b"x"], True)


async def test_compression_negotiated_falls_back_to_websockets(rig: Rig) -> None:
    async with serve(rig.handler, "127.0.0.1", 0, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/", compression="deflate") as c:
            await wait_for(lambda: len(rig.conns) == 1, timeout=5)
            conn = rig.conns[0]
            assert conn.protocol.extensions  # permessage-deflate in use
            frames = [b'{"id":%d}' % i for i in range(50)]
            assert write_frames(conn, frames, True)
            assert await recv_all(c, 50) == [f.decode() for f in frames]
    assert wsconn._last[0] is not frames  # the compressed path does not use the shared encoding


@given(st.lists(st.binary(max_size=200) | st.integers(60_000, 300_000).map(lambda n: b"x" * n), max_size=6), st.booleans())
@settings(max_examples=60, deadline=None)
def test_big_frames_are_written_in_pieces_with_the_same_bytes(frames, text) -> None:
    from cdc.delivery.wsconn import BIG_FRAME, _encode_parts

    parts = _encode_parts(frames, text)
    assert b"".join(bytes(p) for p in parts) == encode_frames(frames, text)
    big = [f for f in frames if len(f) >= BIG_FRAME]
    assert sum(1 for p in parts for f in big if p is f) == len(big)  # big payloads are not copied
