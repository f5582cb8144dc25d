"""ComfyUI's ``/ws`` event stream for one client id (websocket-client), read under caps: a message (a frame, or
fragments together) over ``max_message_bytes`` is a protocol error, and a wait for the next message ends at its
deadline even while a frame trickles in (framepack_client.websocket_limits)."""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Iterator

import websocket

from .errors import ComfyConnectionError, WebSocketClosed, WebSocketError
from .websocket_limits import DEFAULT_MAX_MESSAGE_BYTES, CappedWebSocket, MessageTooLarge

JsonDict = dict[str, Any]
# A wait of 0 would make the socket non-blocking, which websocket-client reports as an error, not as "no data".
_SHORTEST_WAIT = 0.001
# ComfyUI's event messages are small JSON and its previews a few hundred KB: the websocket cap, written once there.
MAX_EVENT_BYTES = DEFAULT_MAX_MESSAGE_BYTES


class EventStream:
    """ComfyUI's ``/ws`` event feed for one client id: yields the JSON messages, skips binary previews.

    Use as a context manager; open it BEFORE queueing a prompt to see every one of its messages. A wait that
    ends in the middle of a frame keeps the part received, so ``next(timeout=...)`` can poll without losing sync.
    A message (a frame, or fragments together) larger than ``max_message_bytes`` is a protocol error.
    """

    def __init__(self, ws_url: str, connect_timeout: float = 30.0, max_message_bytes: int = MAX_EVENT_BYTES):
        self.url = ws_url
        try:
            # no Origin header (ComfyUI checks it against Host only for browsers), no proxy: as the HTTP requests
            self._ws = websocket.create_connection(ws_url, timeout=connect_timeout, suppress_origin=True,
                                                   http_no_proxy=["*"],
                                                   class_=functools.partial(CappedWebSocket,
                                                                            max_message_bytes=max_message_bytes))
        except websocket.WebSocketBadStatusException as exc:
            raise WebSocketError(f"websocket upgrade refused by {ws_url}: {exc}") from exc
        except websocket.WebSocketException as exc:
            raise WebSocketError(f"websocket handshake with {ws_url} failed: {exc}") from exc
        except OSError as exc:
            raise ComfyConnectionError(f"cannot connect to {ws_url}: {exc}") from exc
        self.previews_skipped = 0

    def next(self, timeout: float | None) -> JsonDict | None:
        """Next JSON message, or None if none arrived within ``timeout`` seconds. Raises :class:`WebSocketClosed`
        when the server closes the connection (pings are answered and close frames echoed by websocket-client)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(_SHORTEST_WAIT, deadline - time.monotonic())
            try:
                self._ws.settimeout(remaining)
                self._ws.deadline = deadline
                opcode, payload = self._ws.recv_data()
            except websocket.WebSocketTimeoutException:
                return None
            except MessageTooLarge as exc:
                raise WebSocketError(f"the server sent a websocket message larger than the limit ({exc}); it does "
                                     "not behave like ComfyUI") from exc
            except websocket.WebSocketConnectionClosedException as exc:
                raise WebSocketClosed(None, f"connection closed without a close frame: {exc}") from exc
            except websocket.WebSocketException as exc:
                raise WebSocketError(f"the server broke the websocket protocol: {exc}") from exc
            except OSError as exc:
                raise WebSocketClosed(None, f"connection lost: {exc}") from exc
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                raise WebSocketClosed(code, payload[2:].decode("utf-8", "replace"))
            if opcode == websocket.ABNF.OPCODE_BINARY:  # preview image: 4-byte event type + 4-byte format + image
                self.previews_skipped += 1
                continue
            try:
                return json.loads(payload)
            except ValueError as exc:
                raise WebSocketError(f"non-JSON text message: {payload[:200]!r}") from exc

    def __iter__(self) -> Iterator[JsonDict]:
        while True:
            message = self.next(None)
            if message is not None:
                yield message

    def close(self) -> None:
        """Send a close frame (unless one was already echoed) and close the socket without waiting for the server's
        answer. Idempotent."""
        self._ws.close(timeout=0)
        self._ws.shutdown()  # close() leaves the socket open once a server's close frame has been echoed

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
