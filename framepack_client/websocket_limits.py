"""websocket-client with the limits a client of an untrusted server needs: a cap on one message (a frame's declared
length is checked before its payload is read, and fragments are counted as they add up) and a deadline for a wait
that holds even while a frame trickles in one byte at a time.

websocket-client reads a frame's whole declared length (up to 2^63 bytes) and joins fragments without limit; its
socket timeout applies to each receive, so a slow server resets it with every byte. This subclass swaps in capped
versions of its frame reader and fragment joiner (websocket._abnf, websocket-client 1.9) and checks the deadline
before every receive.
"""

from __future__ import annotations

import time

import websocket
from websocket._abnf import continuous_frame, frame_buffer

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class MessageTooLarge(websocket.WebSocketPayloadException):
    """A websocket message (one frame, or fragments together) is larger than the cap."""


class _CappedFrames(frame_buffer):
    def __init__(self, recv_fn, skip_utf8_validation: bool, cap: int):
        super().__init__(recv_fn, skip_utf8_validation)
        self.cap = cap

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > self.cap:
            raise MessageTooLarge(f"a frame of {self.length} bytes; the limit is {self.cap}")


class _CappedFragments(continuous_frame):
    def __init__(self, fire_cont_frame: bool, skip_utf8_validation: bool, cap: int):
        super().__init__(fire_cont_frame, skip_utf8_validation)
        self.cap = cap

    def add(self, frame) -> None:
        held = len(self.cont_data[1]) if self.cont_data else 0
        if held + len(frame.data) > self.cap:
            raise MessageTooLarge(f"fragments of more than {self.cap} bytes")
        super().add(frame)


class CappedWebSocket(websocket.WebSocket):
    """websocket.WebSocket whose messages are capped at ``max_message_bytes`` and whose receives stop at
    ``deadline`` (time.monotonic() seconds; None = no deadline), raising WebSocketTimeoutException with the part of
    a frame received so far kept for the next wait."""

    def __init__(self, *args, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, **kwargs):
        super().__init__(*args, **kwargs)
        skip_utf8 = self.frame_buffer.skip_utf8_validation
        self.frame_buffer = _CappedFrames(self._recv, skip_utf8, max_message_bytes)
        self.cont_frame = _CappedFragments(self.cont_frame.fire_cont_frame, skip_utf8, max_message_bytes)
        self.deadline: float | None = None

    def _recv(self, bufsize):
        if self.deadline is not None and self.sock is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise websocket.WebSocketTimeoutException("the wait for the next message ended")
            self.sock.settimeout(remaining)
        return super()._recv(bufsize)
