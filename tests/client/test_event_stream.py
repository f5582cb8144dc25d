"""The websocket event stream (websocket-client underneath) against a scripted loopback server: the framing cases a
real ComfyUI server rarely produces (fragments, pings between fragments, previews, long messages, partial frames at
a timeout, close frames), each seen through EventStream as the client code sees it."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
from typing import Callable

import pytest
from websocket import ABNF

from framepack_client.errors import ComfyConnectionError, WebSocketClosed, WebSocketError
from framepack_client.events import EventStream

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server frame (servers do not mask)."""
    return ABNF(int(fin), 0, 0, 0, opcode, 0, payload).format()


def _handshake(conn: socket.socket, status: str = "101 Switching Protocols") -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(4096)
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + _GUID.encode()).digest()).decode()
    conn.sendall(f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())


class ScriptedServer:
    """One loopback connection: the handshake, then ``script(conn)``; what the client sent afterwards is kept."""

    def __init__(self, script: Callable[[socket.socket], None], status: str = "101 Switching Protocols"):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/ws?clientId=test"
        self.received = b""
        self._script, self._status = script, status
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            _handshake(conn, self._status)
            self._script(conn)
            conn.settimeout(5)
            try:
                while chunk := conn.recv(4096):  # until the client closes its end
                    self.received += chunk
            except OSError:
                pass

    def client_frames(self) -> list[tuple[int, bool, bytes]]:
        """(opcode, masked, unmasked payload) of every frame the client sent, once it closed its socket."""
        self._thread.join(timeout=2)
        assert not self._thread.is_alive(), "the client did not close its socket"
        self.listener.close()
        frames, data, pos = [], self.received, 0
        while pos + 2 <= len(data):
            opcode, masked, length = data[pos] & 0x0F, bool(data[pos + 1] & 0x80), data[pos + 1] & 0x7F
            pos += 2
            key = data[pos:pos + 4] if masked else b""
            pos += 4 if masked else 0
            body = data[pos:pos + length]
            frames.append((opcode, masked, bytes(b ^ key[i % 4] for i, b in enumerate(body)) if masked else body))
            pos += length
        return frames


def test_fragments_pings_previews_long_messages_and_the_close_frame():
    big = json.dumps({"type": "big", "data": {"x": "y" * 70000}}).encode()  # 64-bit extended length

    def script(conn):
        conn.sendall(frame(ABNF.OPCODE_TEXT, b'{"type": "a", ', fin=False)    # fragmented text ...
                     + frame(ABNF.OPCODE_PING, b"are you there")                # ... with a ping in between
                     + frame(ABNF.OPCODE_CONT, b'"data": {}}')                  # ... completed
                     + frame(ABNF.OPCODE_BINARY, b"\x00\x00\x00\x01preview")    # binary preview
                     + frame(ABNF.OPCODE_TEXT, big)
                     + frame(ABNF.OPCODE_CLOSE, struct.pack(">H", 1001) + b"bye"))

    server = ScriptedServer(script)
    stream = EventStream(server.url, connect_timeout=5)
    try:
        assert stream.next(timeout=5) == {"type": "a", "data": {}}
        assert len(stream.next(timeout=5)["data"]["x"]) == 70000
        assert stream.previews_skipped == 1
        with pytest.raises(WebSocketClosed) as closed:
            stream.next(timeout=5)
        assert closed.value.code == 1001 and closed.value.reason == "bye"
    finally:
        stream.close()
        stream.close()  # idempotent
    frames = server.client_frames()
    assert (ABNF.OPCODE_PONG, True, b"are you there") in frames  # answered, masked as clients must
    assert any(op == ABNF.OPCODE_CLOSE and masked for op, masked, _ in frames)  # the close is answered


def test_a_timeout_inside_a_frame_keeps_the_part_received():
    message = frame(ABNF.OPCODE_TEXT, b'{"type": "hello"}')
    go_on = threading.Event()

    def script(conn):
        conn.sendall(message[:5])
        go_on.wait(10)
        conn.sendall(message[5:] + frame(ABNF.OPCODE_TEXT, b"{}")[:1])

    server = ScriptedServer(script)
    with EventStream(server.url, connect_timeout=5) as stream:
        assert stream.next(timeout=0.2) is None
        assert stream.next(timeout=0) is None  # a zero wait is a poll, not an error
        go_on.set()
        assert stream.next(timeout=5) == {"type": "hello"}
        assert stream.next(timeout=0.2) is None  # one byte of the next frame: still nothing complete


def test_a_connection_dropped_without_a_close_frame():
    server = ScriptedServer(lambda conn: conn.shutdown(socket.SHUT_WR))
    with EventStream(server.url, connect_timeout=5) as stream:
        with pytest.raises(WebSocketClosed, match="without a close frame") as closed:
            stream.next(timeout=5)
        assert closed.value.code is None


def test_text_that_is_not_json_is_a_protocol_error():
    server = ScriptedServer(lambda conn: conn.sendall(frame(ABNF.OPCODE_TEXT, b"not json")))
    with EventStream(server.url, connect_timeout=5) as stream:
        with pytest.raises(WebSocketError, match="non-JSON text message: b'not json'"):
            stream.next(timeout=5)


def test_connect_errors_are_the_client_errors():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(ComfyConnectionError, match=f"cannot connect to ws://127.0.0.1:{port}/ws"):
        EventStream(f"ws://127.0.0.1:{port}/ws", connect_timeout=5)
    server = ScriptedServer(lambda conn: None, status="404 Not Found")
    with pytest.raises(WebSocketError, match="websocket upgrade refused by ws://127.0.0.1:.*404"):
        EventStream(server.url, connect_timeout=5)
