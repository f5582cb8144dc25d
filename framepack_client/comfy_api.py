"""A small client for ComfyUI's HTTP and websocket API, written with the Python standard library only.

It covers what a program needs to drive a ComfyUI server the way its own frontend does:

    client = ComfyClient("http://127.0.0.1:8188")
    name = client.upload_image("start.png")                   # into ComfyUI's input/ folder
    result = client.run(api_prompt, timeout=600)              # queue + follow until finished
    if result.ok:
        for ref in result.files("images"):
            png = client.view(**ref)

Server facts this relies on (ComfyUI 0.3.x, ``server.py`` / ``execution.py`` / ``main.py``):

* ``POST /prompt`` answers 200 ``{"prompt_id", "number", "node_errors"}`` or 400 ``{"error", "node_errors"}``
  when validation fails; the prompt's ``client_id`` decides which websocket gets its messages.
* ``/ws?clientId=ID`` sends JSON text frames ``{"type": ..., "data": {...}}`` (``status``, ``execution_start``,
  ``execution_cached``, ``executing``, ``progress``, ``progress_state``, ``executed``, ``execution_success``,
  ``execution_error``, ``execution_interrupted``) and binary frames for preview images (skipped here).
  A second socket with the same clientId replaces the first, so one client id serves one watcher at a time.
* ``executing`` with ``data.node = None`` is sent after the prompt's history entry is written, so
  ``GET /history/<id>`` holds the outputs from then on. A prompt that finished before the socket
  connected is found in the history, which is why :meth:`ComfyClient.watch` checks it first and also
  polls it while the socket is quiet.
* ``POST /interrupt`` stops the running prompt at its next interruption point (every
  ``comfy.utils.ProgressBar`` update); the flag is cleared when the next prompt starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "ComfyClient",
    "ComfyError",
    "ComfyConnectionError",
    "ComfyHTTPError",
    "ComfyTimeout",
    "EventStream",
    "PromptRejected",
    "PromptResult",
    "WebSocket",
    "WebSocketClosed",
    "WebSocketError",
]

JsonDict = dict[str, Any]
MessageHandler = Callable[[JsonDict], None]

# Event types that end a prompt, with the result status each one means.
_TERMINAL_EVENTS = {
    "execution_success": "success",
    "execution_error": "error",
    "execution_interrupted": "interrupted",
}


# ----------------------------------------------------------------------------------------------
# Errors


class ComfyError(Exception):
    """Base class of every error raised by this module."""


class ComfyConnectionError(ComfyError):
    """The server could not be reached (refused, reset, DNS, TLS...)."""


class ComfyHTTPError(ComfyError):
    """The server answered with an HTTP error status."""

    def __init__(self, method: str, url: str, status: int, body: str):
        self.method, self.url, self.status, self.body = method, url, status, body
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")


class PromptRejected(ComfyHTTPError):
    """``POST /prompt`` refused the prompt (HTTP 400): it failed ComfyUI's validation.

    ``error`` is the server's ``{"type", "message", "details", "extra_info"}`` dict and ``node_errors``
    maps node ids to ``{"errors": [...], "dependent_outputs": [...], "class_type": ...}``.
    """

    def __init__(self, url: str, body: str, error: JsonDict, node_errors: JsonDict):
        self.error = error
        self.node_errors = node_errors
        super().__init__("POST", url, 400, body)
        summary = error.get("message", "prompt rejected")
        if error.get("details"):
            summary += f": {error['details']}"
        for node_id, info in node_errors.items():
            for item in info.get("errors", []):
                summary += f"\n  node {node_id} ({info.get('class_type', '?')}): {item.get('message', '')}"
                if item.get("details"):
                    summary += f" - {item['details']}"
        self.args = (summary,)


class ComfyTimeout(ComfyError, TimeoutError):
    """A prompt did not finish (or the server did not answer) within the allowed time."""


class WebSocketError(ComfyError):
    """The websocket handshake failed or the server broke the protocol."""


class WebSocketClosed(WebSocketError):
    """The server closed the websocket (``code`` is the close code, or None)."""

    def __init__(self, code: int | None, reason: str = ""):
        self.code, self.reason = code, reason
        super().__init__(f"websocket closed by server (code {code}) {reason}".strip())


# ----------------------------------------------------------------------------------------------
# Minimal RFC 6455 websocket client

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


class EventStream:
    """ComfyUI's ``/ws`` event feed for one client id: yields the JSON messages, skips binary previews.

    Use as a context manager; open it BEFORE queueing a prompt to see every one of its messages.
    """

    def __init__(self, ws_url: str, connect_timeout: float = 30.0):
        self.url = ws_url
        self._ws = WebSocket.connect(ws_url, timeout=connect_timeout)
        self.previews_skipped = 0

    def next(self, timeout: float | None) -> JsonDict | None:
        """Next JSON message, or None if none arrived within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = self._ws.recv(remaining)
            if message is None:
                return None
            opcode, payload = message
            if opcode == _OP_BINARY:  # preview image: 4-byte event type + 4-byte format + image bytes
                self.previews_skipped += 1
                continue
            try:
                return json.loads(payload.decode("utf-8"))
            except ValueError as exc:
                raise WebSocketError(f"non-JSON text message: {payload[:200]!r}") from exc

    def __iter__(self) -> Iterator[JsonDict]:
        while True:
            message = self.next(None)
            if message is not None:
                yield message

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class PromptResult:
    """What became of one queued prompt.

    ``status`` is "success", "error" or "interrupted". ``messages`` holds this prompt's events as
    ``{"type", "data"}`` dicts in arrival order (from the websocket, or from the history's record when
    the prompt had finished before the socket connected). ``progress`` is the ``data`` of each
    ``progress`` event. ``error`` is the ``data`` of ``execution_error`` (``exception_message``,
    ``exception_type``, ``traceback``, ``node_id``, ``node_type`` ...) or of ``execution_interrupted``.
    ``outputs`` maps output node ids to their UI outputs (``{"images": [{filename, subfolder, type}]}``...).
    """

    prompt_id: str
    status: str
    outputs: dict[str, JsonDict] = field(default_factory=dict)
    messages: list[JsonDict] = field(default_factory=list)
    progress: list[JsonDict] = field(default_factory=list)
    error: JsonDict | None = None
    history: JsonDict = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def error_message(self) -> str | None:
        """One line for people: the exception and the node it came from, or None on success."""
        if self.status == "success":
            return None
        if self.status == "interrupted":
            node = (self.error or {}).get("node_type")
            return f"interrupted{f' in {node}' if node else ''}"
        err = self.error or {}
        where = f"{err.get('node_type', '?')} (node {err.get('node_id', '?')})"
        return f"{err.get('exception_type', 'error')}: {err.get('exception_message', '').strip()} in {where}"

    def message_types(self) -> list[str]:
        return [m.get("type", "") for m in self.messages]

    def files(self, kind: str = "images") -> list[JsonDict]:
        """File references of one output kind ("images", "gifs", "latents", ...) over all output nodes,
        each ``{"filename", "subfolder", "type"}`` as :meth:`ComfyClient.view` takes them."""
        refs: list[JsonDict] = []
        for node_output in self.outputs.values():
            for ref in node_output.get(kind, []) or []:
                if isinstance(ref, dict) and "filename" in ref:
                    refs.append({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
        return refs


def _result_from_history(prompt_id: str, entry: JsonDict, elapsed_s: float,
                         messages: list[JsonDict] | None = None,
                         progress: list[JsonDict] | None = None) -> PromptResult:
    """Build a result from a ``/history`` entry; the events come from it too unless given."""
    status_info = entry.get("status") or {}
    recorded = [{"type": event, "data": data} for event, data in status_info.get("messages", [])]
    if messages is None:
        messages = recorded
    status, error = "error", None
    for m in recorded:  # the history's record is authoritative for how the prompt ended
        if m["type"] in _TERMINAL_EVENTS:
            status = _TERMINAL_EVENTS[m["type"]]
            error = m["data"] if status != "success" else None
    if not any(m["type"] in _TERMINAL_EVENTS for m in recorded):
        status = "success" if status_info.get("status_str") == "success" else "error"
    return PromptResult(prompt_id=prompt_id, status=status, outputs=entry.get("outputs") or {},
                        messages=messages, progress=progress or [], error=error, history=entry,
                        elapsed_s=elapsed_s)


# ----------------------------------------------------------------------------------------------
# Client


class ComfyClient:
    """Client for one ComfyUI server.

    ``base_url`` is the server root, e.g. ``http://127.0.0.1:8188`` (a path prefix behind a reverse
    proxy is kept). ``client_id`` names this client to the server: the prompts it queues report to
    websockets opened with the same id. ``timeout`` bounds each HTTP request, in seconds.
    """

    def __init__(self, base_url: str, client_id: str | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout

    # -- plumbing

    def _url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 content_type: str | None = None, query: dict[str, Any] | None = None,
                 timeout: float | None = None) -> bytes:
        url = self._url(path, query)
        request = urllib.request.Request(url, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            if path == "/prompt" and method == "POST" and exc.code == 400:
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = {}
                error = parsed.get("error") if isinstance(parsed.get("error"), dict) else {"message": text}
                raise PromptRejected(url, text, error, parsed.get("node_errors") or {}) from None
            raise ComfyHTTPError(method, url, exc.code, text) from None
        except (socket.timeout, TimeoutError) as exc:
            raise ComfyTimeout(f"{method} {url}: no answer within {timeout or self.timeout} s") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ComfyConnectionError(f"{method} {url} failed: {exc}") from exc

    def _get_json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return json.loads(self._request("GET", path, query=query))

    def _post_json(self, path: str, payload: Any) -> bytes:
        return self._request("POST", path, body=json.dumps(payload).encode(), content_type="application/json")

    @property
    def ws_url(self) -> str:
        """The websocket URL for this client's events."""
        parts = urllib.parse.urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urllib.parse.urlencode({"clientId": self.client_id})
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws", query, ""))

    # -- read-only endpoints

    def object_info(self, node: str | None = None) -> JsonDict:
        """Node definitions: all of them, or ``{node: definition}`` for one class (empty if unknown)."""
        path = "/object_info" if node is None else "/object_info/" + urllib.parse.quote(node, safe="")
        return self._get_json(path)

    def system_stats(self) -> JsonDict:
        """``{"system": {...versions...}, "devices": [...]}``; also the cheapest liveness check."""
        return self._get_json("/system_stats")

    def history(self, prompt_id: str | None = None, max_items: int | None = None) -> JsonDict:
        """``{prompt_id: entry}`` for one prompt (empty until it finished) or for all recent ones."""
        if prompt_id is not None:
            return self._get_json("/history/" + urllib.parse.quote(prompt_id, safe=""))
        return self._get_json("/history", {"max_items": max_items} if max_items else None)

    def queue(self) -> JsonDict:
        """``{"queue_running": [...], "queue_pending": [...]}``; items are ``[number, prompt_id, ...]``."""
        return self._get_json("/queue")

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:  # noqa: A002 - server's name
        """Bytes of a file in ComfyUI's output, input or temp folder (``type``)."""
        return self._request("GET", "/view", query={"filename": filename, "subfolder": subfolder, "type": type})

    # -- actions

    def upload_image(self, image: str | os.PathLike[str] | bytes, name: str | None = None,
                     overwrite: bool = True, subfolder: str = "", type: str = "input") -> str:  # noqa: A002
        """Store an image (a path, or raw bytes plus ``name``) in the server's input folder.

        Returns the name to give LoadImage: the stored file name, prefixed with ``subfolder/`` if any.
        With ``overwrite=False`` the server picks a free name when a different file has this one.
        """
        if isinstance(image, (bytes, bytearray)):
            if not name:
                raise ValueError("upload_image needs a name when given bytes")
            data = bytes(image)
        else:
            path = Path(image)
            data = path.read_bytes()
            name = name or path.name
        boundary = "----framepack" + uuid.uuid4().hex
        fields = {"overwrite": "true" if overwrite else "false", "subfolder": subfolder, "type": type}
        body = bytearray()
        for key, value in fields.items():
            body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n").encode()
        safe_name = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{safe_name}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        body += data + f"\r\n--{boundary}--\r\n".encode()
        reply = json.loads(self._request("POST", "/upload/image", body=bytes(body),
                                         content_type=f"multipart/form-data; boundary={boundary}"))
        stored = reply["name"]
        return f"{reply['subfolder']}/{stored}" if reply.get("subfolder") else stored

    def queue_prompt(self, prompt: JsonDict, extra_data: JsonDict | None = None,
                     prompt_id: str | None = None, front: bool = False) -> str:
        """Queue an API-format prompt; returns its prompt id.

        Raises :class:`PromptRejected` (with the server's ``error`` and ``node_errors``) when validation fails.
        ``extra_data`` is passed through (e.g. ``{"extra_pnginfo": {"workflow": ui_workflow}}``).
        """
        payload: JsonDict = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        if prompt_id:
            payload["prompt_id"] = prompt_id
        if front:
            payload["front"] = True
        reply = json.loads(self._post_json("/prompt", payload))
        return reply["prompt_id"]

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt (only if it is ``prompt_id``, when given) at its next interruption point."""
        self._post_json("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def delete_queued(self, prompt_ids: list[str]) -> None:
        """Remove prompts that have not started yet from the queue."""
        self._post_json("/queue", {"delete": list(prompt_ids)})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """Ask the server to unload models and/or free cached memory after the current prompt."""
        self._post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})

    # -- following a prompt

    def open_events(self, connect_timeout: float = 30.0) -> EventStream:
        """Open this client's websocket event stream (open it before queueing to miss nothing)."""
        return EventStream(self.ws_url, connect_timeout=connect_timeout)

    def _finished_entry(self, prompt_id: str) -> JsonDict | None:
        return self.history(prompt_id).get(prompt_id)

    def watch(self, prompt_id: str, timeout: float = 600.0, on_message: MessageHandler | None = None,
              events: EventStream | None = None, poll_interval: float = 1.0) -> PromptResult:
        """Follow a queued prompt until it finishes, and return its :class:`PromptResult`.

        Reads this client's websocket (``events`` if given, else a new one, closed afterwards) and calls
        ``on_message`` with every JSON message received, whichever prompt it is about. The prompt has
        finished on ``executing`` with node None, ``execution_success``, ``execution_error`` or
        ``execution_interrupted``; its outputs and final status then come from ``/history``. The history
        is also checked first and whenever the socket has been quiet for ``poll_interval`` seconds, so a
        prompt that finished before the socket connected, or that was queued under another client id,
        is still seen. Raises :class:`ComfyTimeout` if it has not finished after ``timeout`` seconds.
        """
        start = time.monotonic()
        deadline = start + timeout
        own_stream = events is None
        stream = events if events is not None else self.open_events(connect_timeout=min(30.0, timeout))
        messages: list[JsonDict] = []
        progress: list[JsonDict] = []
        last_type = "none"
        try:
            entry = self._finished_entry(prompt_id)
            last_poll = time.monotonic()
            while entry is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ComfyTimeout(f"prompt {prompt_id} did not finish within {timeout:g} s "
                                       f"(last event: {last_type})")
                message = stream.next(timeout=min(remaining, poll_interval))
                ended = False
                if message is not None:
                    if on_message is not None:
                        on_message(message)
                    data = message.get("data") or {}
                    if isinstance(data, dict) and data.get("prompt_id") == prompt_id:
                        kind = message.get("type", "")
                        messages.append(message)
                        last_type = kind
                        if kind == "progress":
                            progress.append(data)
                        ended = kind in _TERMINAL_EVENTS or (kind == "executing" and data.get("node") is None)
                if ended or message is None or time.monotonic() - last_poll >= poll_interval:
                    entry = self._finished_entry(prompt_id)
                    last_poll = time.monotonic()
                    if ended and entry is None:
                        entry = self._wait_for_history(prompt_id, deadline)
        finally:
            if own_stream:
                stream.close()
        return _result_from_history(prompt_id, entry, time.monotonic() - start,
                                    messages=messages or None, progress=progress)

    def _wait_for_history(self, prompt_id: str, deadline: float) -> JsonDict:
        """The history entry is written just after the terminal event is sent: wait for it briefly."""
        while True:
            entry = self._finished_entry(prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() >= deadline:
                raise ComfyTimeout(f"prompt {prompt_id} ended but its history entry never appeared")
            time.sleep(0.05)

    def run(self, prompt: JsonDict, timeout: float = 600.0, on_message: MessageHandler | None = None,
            extra_data: JsonDict | None = None) -> PromptResult:
        """Queue ``prompt`` and follow it to the end; the websocket is opened first so no event is missed."""
        with self.open_events(connect_timeout=min(30.0, timeout)) as stream:
            prompt_id = self.queue_prompt(prompt, extra_data=extra_data)
            return self.watch(prompt_id, timeout=timeout, on_message=on_message, events=stream)
