"""Exceptions of the ComfyUI client (server_api) and of the jobs it runs (JobError)."""

from __future__ import annotations

from typing import Any

JsonDict = dict[str, Any]


class ComfyError(Exception):
    """Base class of every error raised by this module."""


class ComfyConnectionError(ComfyError):
    """The server could not be reached (refused, reset, DNS, TLS...)."""


class ComfyProtocolError(ComfyConnectionError):
    """The server answered with something no ComfyUI sends (a reply over the size cap); it is treated like a
    server that cannot be used."""


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


class JobError(Exception):
    """A job could not be created, found or followed; the message says why and what to do."""
