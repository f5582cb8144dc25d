"""Connections under hostile load: uvicorn's h11 protocol with deadlines and caps that uvicorn's settings do not
have (it has no deadline for a request's head or body, and no cap per client).

* A request's head must arrive within ``header_seconds`` of the connection opening (or of the previous response
  on a kept-alive connection), its body within ``body_seconds`` of the head: otherwise 408 and the connection is
  closed. A client sending one byte a minute cannot hold a connection.
* One client address holds at most ``max_client_connections`` (0: no cap; behind a reverse proxy every client
  has the proxy's address, so the proxy must cap them, README), all clients ``max_connections``: a connection over
  either cap is answered 503 and closed at once, so a flood cannot use up the process's open files and a second
  client (a health check) is still served.
* h11's largest request head (``h11_max_incomplete_event_size``) and the keep-alive timeout are set explicitly.

framepack_service.limits' SERVICE_HEADER_SECONDS, SERVICE_BODY_SECONDS, SERVICE_MAX_CLIENT_CONNECTIONS,
SERVICE_MAX_CONNECTIONS, SERVICE_KEEP_ALIVE_SECONDS and SERVICE_MAX_HEADER_BYTES are the defaults.
"""

from __future__ import annotations

import logging
import resource
from collections import Counter

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from framepack_core.limits import SERVICE_MAX_HEADER_BYTES

log = logging.getLogger("framepack.service")
SPARE_FILES = 256  # open files beyond the connections: the job store, servers, downloads, uploads

_REPLIES = {
    408: b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 35\r\n"
         b"\r\nthe request was not sent in time.\r\n",
    503: b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 10\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 37\r\n\r\ntoo many connections from one client\r\n",
}


def guarded_protocol(header_seconds: float, body_seconds: float, max_connections: int,
                     max_client_connections: int) -> type[H11Protocol]:
    """An H11Protocol class with the deadlines and caps above; each class counts its own connections."""
    per_client: Counter = Counter()

    class GuardedH11Protocol(H11Protocol):
        _deadline = None  # (phase, TimerHandle): the head or the body being waited for
        _counted = False

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            per_client[address] += 1
            self._counted = True
            over_client = max_client_connections and per_client[address] > max_client_connections
            if over_client or len(self.connections) > max_connections:
                self._refuse(503)
                return
            self._watch()

        def connection_lost(self, exc) -> None:
            self._disarm()
            if self._counted:
                address = self.client[0] if self.client else ""
                per_client[address] -= 1
                if per_client[address] <= 0:
                    del per_client[address]
                self._counted = False
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        # -- deadlines

        def _watch(self) -> None:
            """Arms the deadline of the phase the client is in (kept while it stays there), or none."""
            if self.transport is None or self.transport.is_closing():
                return
            state = self.conn.their_state
            phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
            if self._deadline is not None and self._deadline[0] == phase:
                return
            self._disarm()
            if phase is not None:
                seconds = header_seconds if phase == "head" else body_seconds
                self._deadline = (phase, self.loop.call_later(seconds, self._expired, phase))

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline[1].cancel()
                self._deadline = None

        def _expired(self, phase: str) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            log.info("closing a connection from %s: its request %s did not arrive in time",
                     self.client[0] if self.client else "?", phase)
            if self.conn.our_state is h11.IDLE:  # no response started: say why
                self._refuse(408)
            else:
                self.transport.close()

        def _refuse(self, status: int) -> None:
            self._disarm()
            self.transport.write(_REPLIES[status])
            self.transport.close()

    return GuardedH11Protocol


def raise_open_files(wanted: int) -> int:
    """Raises the soft open-files limit towards ``wanted`` (up to the hard limit); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def uvicorn_config(app, config, **extra) -> uvicorn.Config:
    """uvicorn's configuration for the service's ``app`` under ``config`` (core.ServiceConfig)."""
    files = raise_open_files(config.max_connections + SPARE_FILES)
    if files < config.max_connections + SPARE_FILES:
        log.warning("the open-files limit is %d: lower --max-connections to %d or raise the hard limit (ulimit -Hn)",
                    files, max(1, files - SPARE_FILES))
    protocol = guarded_protocol(config.header_seconds, config.body_seconds, config.max_connections,
                                config.max_client_connections)
    return uvicorn.Config(app, host=config.host, port=config.port, lifespan="on", http=protocol,
                          timeout_keep_alive=config.keep_alive_seconds,
                          h11_max_incomplete_event_size=SERVICE_MAX_HEADER_BYTES, **extra)
