"""HTTP exchanges with a server that may be slow or hostile: one deadline for the whole exchange (connecting,
sending, the reply's headers and body) rather than a timeout per read, and a cap on the reply body, which is read in
pieces and can go straight to a file.

A per-read timeout alone lets a server that sends one byte a second keep a call alive for as long as it likes, and
reading a whole reply before looking at its size lets it fill the memory. Here a watchdog thread shuts the
connection's socket down when the deadline passes, whatever the exchange is doing at that moment.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from pathlib import Path
from typing import BinaryIO

CHUNK = 64 * 1024


class TransferTimeout(TimeoutError):
    """The exchange was not over by its deadline."""


class TransferTooLarge(ValueError):
    """The reply body is larger than the cap (said by Content-Length, or found while reading)."""

    def __init__(self, size: int | None, cap: int):
        self.size, self.cap = size, cap
        told = f"{size} bytes" if size is not None else "more than that"
        super().__init__(f"the reply is {told}; the limit is {cap} bytes")


class Exchange:
    """One HTTP request on ``conn`` (an unopened http.client connection) that must be over by ``deadline``
    (time.monotonic() seconds). Use as a context manager; the connection is closed on leaving."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float):
        self.conn = conn
        self.deadline = deadline
        self.expired = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> "Exchange":
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TransferTimeout("no time was left for the request")
        self.conn.timeout = remaining  # bounds connecting and each read; the watchdog bounds the whole
        self._timer = threading.Timer(remaining, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.conn.close()

    def _expire(self) -> None:
        self.expired = True
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # any blocked read or write returns at once
            except OSError:
                pass

    def _guard(self, action, *args, **kwargs):
        try:
            result = action(*args, **kwargs)
        except (OSError, http.client.HTTPException, ValueError) as err:
            if self.expired or time.monotonic() >= self.deadline:
                raise TransferTimeout("the exchange was not over in time") from err
            raise
        if self.expired:
            raise TransferTimeout("the exchange was not over in time")
        return result

    def send(self, method: str, target: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        """Sends the request and reads the reply's status and headers."""
        self._guard(self.conn.request, method, target, body=body, headers=headers or {})
        return self._guard(self.conn.getresponse)

    def read(self, response: http.client.HTTPResponse, max_bytes: int, sink: BinaryIO | None = None) -> bytes:
        """The reply body (or, with ``sink``, b"" after writing it there), refused beyond ``max_bytes``."""
        length = response.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > max_bytes:
            raise TransferTooLarge(int(length), max_bytes)
        chunks, size = [], 0
        while True:
            chunk = self._guard(response.read1, CHUNK)  # returns what one receive brings: no waiting for a full chunk
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise TransferTooLarge(None, max_bytes)
            if sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)
        return b"".join(chunks)


def read_to_file(exchange: Exchange, response: http.client.HTTPResponse, path: Path, max_bytes: int) -> int:
    """Writes the reply body to ``path`` through a ``.part`` file that replaces it only when complete; nothing is
    left behind on failure. Returns the size."""
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as f:
            exchange.read(response, max_bytes, sink=f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size
