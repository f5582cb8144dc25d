"""A minimal RFC 6455 websocket client (standard library only) for ComfyUI's /ws event stream."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time
import urllib.parse
from typing import Any

from .errors import ComfyConnectionError, WebSocketClosed, WebSocketError

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_HANDSHAKE_BYTES = 64 * 1024


def _apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key`` (masking and unmasking are the same operation)."""
    if not data:
        return data
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """One websocket frame. Clients must mask (RFC 6455 5.3): pass ``mask_key`` (4 bytes) for that."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask_key is not None else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack(">Q", n)
    if mask_key is not None:
        head += mask_key
        payload = _apply_mask(payload, mask_key)
    return bytes(head) + payload


class WebSocket:
    """A blocking websocket client connection: handshake, text/binary messages, ping/pong, close.

    Incoming frames are parsed from an internal buffer that survives socket timeouts, so
    ``recv(timeout=...)`` can be called in a polling loop without losing stream sync. Fragmented
    messages are reassembled; control frames arriving between fragments are handled in place.
    """

    def __init__(self, sock: socket.socket, buffered: bytes = b""):
        self._sock = sock
        self._buf = bytearray(buffered)
        self._fragments: list[bytes] = []
        self._fragment_opcode: int | None = None
        self._close_sent = False
        self.closed = False

    @classmethod
    def connect(cls, url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> "WebSocket":
        """Open ``ws://`` or ``wss://`` ``url`` and complete the opening handshake (RFC 6455 4.1)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"not a websocket url: {url}")
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except OSError as exc:
            raise ComfyConnectionError(f"cannot connect to {url}: {exc}") from exc

        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            response = bytearray()
            while b"\r\n\r\n" not in response:
                chunk = sock.recv(4096)
                if not chunk or len(response) > _MAX_HANDSHAKE_BYTES:
                    raise WebSocketError(f"bad handshake response from {url}: {bytes(response[:300])!r}")
                response += chunk
        except OSError as exc:
            sock.close()
            raise ComfyConnectionError(f"websocket handshake with {url} failed: {exc}") from exc

        head, _, rest = bytes(response).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        got = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if " 101 " not in f"{status_line} " or got.get("sec-websocket-accept") != expected:
            sock.close()
            raise WebSocketError(f"websocket upgrade refused by {url}: {status_line}")
        return cls(sock, rest)

    # -- sending

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        self._sock.sendall(encode_frame(opcode, payload, mask_key=os.urandom(4)))

    def send_text(self, text: str) -> None:
        self._send_frame(_OP_TEXT, text.encode("utf-8"))

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj))

    def close(self, code: int = 1000) -> None:
        """Send a close frame (once) and close the socket. Safe to call repeatedly."""
        if not self._close_sent and not self.closed:
            self._close_sent = True
            try:
                self._send_frame(_OP_CLOSE, struct.pack(">H", code))
            except OSError:
                pass
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    # -- receiving

    def _parse_frame(self) -> tuple[bool, int, bytes] | None:
        """Take one complete frame off the buffer, or return None if it is not all there yet."""
        buf = self._buf
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        masked, length = bool(buf[1] & 0x80), buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack(">H", buf[2:4])
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack(">Q", buf[2:10])
            pos = 10
        key = b""
        if masked:  # servers must not mask, but unmasking costs nothing
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return fin, opcode, _apply_mask(payload, key) if masked else payload

    def _read_more(self, deadline: float | None) -> bool:
        """Append bytes from the socket to the buffer; False if the deadline passed first."""
        if deadline is None:
            self._sock.settimeout(None)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except OSError as exc:
            self.closed = True
            raise WebSocketClosed(None, f"connection lost: {exc}") from exc
        if not chunk:
            self.closed = True
            raise WebSocketClosed(None, "connection closed without a close frame")
        self._buf += chunk
        return True

    def recv(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """Next complete data message as ``(opcode, payload)`` (1 = text, 2 = binary).

        Returns None when ``timeout`` seconds pass without a complete message (partial data stays
        buffered). Answers pings, and raises :class:`WebSocketClosed` when the server closes.
        """
        if self.closed:
            raise WebSocketClosed(None, "websocket already closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._parse_frame()
            if frame is None:
                if not self._read_more(deadline):
                    return None
                continue
            fin, opcode, payload = frame
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
            elif opcode == _OP_PONG:
                pass
            elif opcode == _OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                self.close(code or 1000)  # echo the close, as RFC 6455 5.5.1 asks
                raise WebSocketClosed(code, payload[2:].decode("utf-8", "replace"))
            elif opcode in (_OP_TEXT, _OP_BINARY):
                if self._fragment_opcode is not None:
                    raise WebSocketError("new message started inside a fragmented message")
                if fin:
                    return opcode, payload
                self._fragment_opcode, self._fragments = opcode, [payload]
            elif opcode == _OP_CONTINUATION:
                if self._fragment_opcode is None:
                    raise WebSocketError("continuation frame without a message to continue")
                self._fragments.append(payload)
                if fin:
                    message = (self._fragment_opcode, b"".join(self._fragments))
                    self._fragment_opcode, self._fragments = None, []
                    return message
            else:
                raise WebSocketError(f"unknown websocket opcode {opcode:#x}")


