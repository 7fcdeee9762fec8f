"""The server WebSocket served apart from aiohttp once upgraded (gateway.http.websocket),
spoken to frame by frame over a raw TCP connection."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.errors import BadRequest
from gateway.http import websocket
from gateway.http.websocket import WebSocket, accept, accept_headers

SOCKETS = web.AppKey("sockets", list)
KEY = base64.b64encode(b"0123456789abcdef").decode()


class Echo(WebSocket):
    __slots__ = ("gone", "texts")

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.gone = asyncio.Event()

    def received(self, text: str) -> None:
        self.texts.append(text)
        self.send("echo:" + text)

    def closed(self) -> None:
        self.gone.set()

    def expired(self) -> None:
        self.close(4000, b"deadline")


async def serve_socket(request: web.Request) -> web.StreamResponse:
    socket = Echo()
    request.app[SOCKETS].append(socket)
    return await accept(request, socket, accept_headers(request))


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    app = web.Application()
    app[SOCKETS] = []
    app.router.add_get("/ws", serve_socket)
    return await aiohttp_server(app)


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes((opcode | (0x80 if fin else 0),))
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += struct.pack("!BH", bit | 126, n)
    else:
        head += struct.pack("!BQ", bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def upgrade(server: Any, early: bytes = b"") -> tuple[asyncio.StreamReader, Any]:
    """A raw connection upgraded to a WebSocket; `early` is sent with the upgrade request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key.encode() + b"\r\n\r\n" + early
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Extensions" not in head  # no deflate, even unasked
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    assert first & 0x80 and not second & 0x80  # whole, unmasked
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return first & 0x0F, await reader.readexactly(n)


async def closed_by_server(reader: asyncio.StreamReader) -> None:
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_text_messages_whole_and_fragmented_binary_ignored(server: Any) -> None:
    reader, writer = await upgrade(server, early=frame(0x1, b"early"))
    assert await read_frame(reader) == (0x1, b"echo:early")  # sent before the 101 arrived
    writer.write(frame(0x2, b"\x00binary"))
    writer.write(frame(0x1, "hé".encode(), fin=False) + frame(0x9, b"p"))  # a ping between
    writer.write(frame(0x0, b"l", fin=False) + frame(0x0, b"lo"))
    assert await read_frame(reader) == (0xA, b"p")
    assert await read_frame(reader) == (0x1, "echo:héllo".encode())
    writer.write(frame(0x1, b"x" * 40_000))  # a 16-bit length
    assert await read_frame(reader) == (0x1, b"echo:" + b"x" * 40_000)
    assert server.app[SOCKETS][0].texts == ["early", "héllo", "x" * 40_000]
    writer.close()


async def test_the_client_closes(server: Any) -> None:
    reader, writer = await upgrade(server)
    writer.write(frame(0x8, struct.pack("!H", 1000) + b"bye"))
    assert await read_frame(reader) == (0x8, struct.pack("!H", 1000))
    await closed_by_server(reader)
    await asyncio.wait_for(server.app[SOCKETS][0].gone.wait(), 5)
    writer.close()


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (frame(0x1, b"unmasked", mask=False), 1002),
        # Refused on its length alone (the payload would follow).
        (bytes((0x81, 0xFF)) + struct.pack("!Q", websocket.MAX_MESSAGE_BYTES + 1), 1009),
        (frame(0x1, b"\xff\xfe"), 1007),
        (frame(0x0, b"no message to continue"), 1002),
        (frame(0x9, b"fragmented ping", fin=False), 1002),
        (frame(0x3, b"reserved opcode"), 1002),
        (bytes((0x81 | 0x40, 0x80)) + os.urandom(4), 1002),  # an extension bit
    ],
)
async def test_protocol_errors_close_the_socket(server: Any, sent: bytes, code: int) -> None:
    reader, writer = await upgrade(server)
    writer.write(sent)
    opcode, payload = await read_frame(reader)
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, code)
    await closed_by_server(reader)
    assert server.app[SOCKETS][0].texts == []
    writer.close()


async def test_a_silent_client_is_pinged_then_dropped(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket, "HEARTBEAT_S", 0.3)
    reader, writer = await upgrade(server)
    assert await read_frame(reader) == (0x9, b"")
    writer.write(frame(0xA, b""))  # answered: the socket stays
    assert await read_frame(reader) == (0x9, b"")  # the next ping, one quiet period later
    await closed_by_server(reader)  # this one unanswered
    await asyncio.wait_for(server.app[SOCKETS][0].gone.wait(), 5)
    writer.close()


async def test_the_server_closes_and_waits_for_the_answer(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT_S", 0.3)
    answering, answering_writer = await upgrade(server)
    silent, silent_writer = await upgrade(server)
    first, second = server.app[SOCKETS]
    loop = asyncio.get_running_loop()
    first.deadline = second.deadline = loop.time() + 0.1
    first.reschedule()
    second.reschedule()
    for reader in (answering, silent):
        assert await read_frame(reader) == (0x8, struct.pack("!H", 4000) + b"deadline")
    with pytest.raises(ConnectionResetError):
        first.send("after the close")
    answering_writer.write(frame(0x8, struct.pack("!H", 4000)))
    await closed_by_server(answering)
    started = loop.time()
    await closed_by_server(silent)  # dropped once its time to answer ran out
    assert loop.time() - started > 0.1
    for writer in (answering_writer, silent_writer):
        writer.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": KEY},
        {"Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": KEY},
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY},
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"},
        {
            "Upgrade": "websocket",
            "Connection": "keep-alive, Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dG9vIHNob3J0",
        },
    ],
)
def test_a_bad_upgrade_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        accept_headers(make_mocked_request("GET", "/ws", headers=headers))


def test_the_accept_value() -> None:
    # RFC 6455 §1.3's example.
    headers = {
        "Upgrade": "WebSocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    answer = accept_headers(make_mocked_request("GET", "/ws", headers=headers))
    assert answer["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def test_writes_wait_while_the_transport_is_full() -> None:
    socket = Echo()
    socket.pause_writing()
    waiting = asyncio.ensure_future(socket.drain())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    socket.resume_writing()
    await asyncio.wait_for(waiting, 1)
    socket.pause_writing()
    waiting = asyncio.ensure_future(socket.drain())
    socket.connection_lost(None)  # a lost connection ends the wait, with an error
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(waiting, 1)
    assert socket.gone.is_set()
