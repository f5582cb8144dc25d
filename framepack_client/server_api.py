"""A small client for ComfyUI's HTTP and websocket API: the standard library for HTTP, websocket-client for the
event stream.

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

Whatever answers at the address is not trusted: every HTTP call has one deadline for the whole exchange and a cap
on the reply (framepack_client.transfer), redirects are not followed, websocket messages are capped (frames and
fragments alike) and a wait for the next message ends at its deadline even while a frame trickles in
(framepack_client.events, the event stream). The client connects directly (no HTTP proxy), as its websocket does.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import (ComfyConnectionError, ComfyError, ComfyHTTPError, ComfyProtocolError, ComfyTimeout,
                     PromptRejected, WebSocketClosed, WebSocketError)
from .events import EventStream
from .transfer import Exchange, TransferTimeout, TransferTooLarge, read_to_file

__all__ = [
    "ComfyClient",
    "ComfyError",
    "ComfyConnectionError",
    "ComfyHTTPError",
    "ComfyTimeout",
    "EventStream",
    "PromptRejected",
    "PromptResult",
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

# Reply caps. /object_info of an install with many node packs is a few MB (the event stream's: events.py).
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_ERROR_BYTES = 1024 * 1024
MAX_FILE_BYTES = 8 * 1024 ** 3  # one output file (view, download)
DOWNLOAD_SECONDS = 3600.0  # the whole download of one output file


def check_server_url(url: str) -> str:
    """The server address without a trailing slash; ValueError with the fix when it is not an http(s) URL with a
    host, or when it carries a user name or password (they would end up in messages and job files, and ComfyUI has
    no login of its own: put an authenticating proxy in front and give its address)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        raise ValueError(f"the server address is not a valid URL ({err}); give e.g. http://127.0.0.1:8188") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the server address must be an http:// or https:// URL with a host, e.g. "
                         "http://127.0.0.1:8188")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("the server address carries a user name or password (user:pass@host), which is not "
                         "supported and would be stored in job files; give the address without them (use a proxy "
                         "that adds the login, or a server that needs none)")
    if parts.query or parts.fragment:
        raise ValueError("the server address must not have a ?query or #fragment; give e.g. http://127.0.0.1:8188")
    return url.rstrip("/")


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

    def __init__(self, base_url: str, client_id: str | None = None, timeout: float = 60.0,
                 max_json_bytes: int = MAX_JSON_BYTES):
        self.base_url = check_server_url(base_url)
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self.max_json_bytes = max_json_bytes
        parts = urllib.parse.urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self._host, self._port, self._prefix = parts.hostname, parts.port, parts.path.rstrip("/")

    # -- plumbing

    def _url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def _connection(self, seconds: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return kind(self._host, self._port, timeout=seconds)

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 content_type: str | None = None, query: dict[str, Any] | None = None,
                 timeout: float | None = None, max_bytes: int | None = None, to_file: Path | None = None) -> bytes:
        """One exchange, over by ``timeout`` seconds (default: the client's), its reply capped at ``max_bytes``
        (default: the JSON cap) and written to ``to_file`` when given."""
        url = self._url(path, query)
        target = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        seconds = timeout or self.timeout
        cap = max_bytes or self.max_json_bytes
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            with Exchange(self._connection(seconds), time.monotonic() + seconds) as exchange:
                response = exchange.send(method, target, body, headers)
                if not 200 <= response.status < 300:
                    cut = self.max_json_bytes if path == "/prompt" else MAX_ERROR_BYTES
                    text = exchange.read(response, cut).decode("utf-8", "replace")
                    self._raise_status(method, url, path, response.status, text)
                if to_file is not None:
                    read_to_file(exchange, response, to_file, cap)
                    return b""
                return exchange.read(response, cap)
        except TransferTimeout as exc:
            raise ComfyTimeout(f"{method} {url}: no complete answer within {seconds:g} s") from exc
        except TransferTooLarge as exc:
            raise ComfyProtocolError(f"{method} {url}: {exc}; a ComfyUI server does not answer that much") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ComfyConnectionError(f"{method} {url} failed: {exc or type(exc).__name__}") from exc

    @staticmethod
    def _raise_status(method: str, url: str, path: str, status: int, text: str) -> None:
        if path == "/prompt" and method == "POST" and status == 400:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {}
            if not isinstance(parsed, dict):
                parsed = {}
            error = parsed.get("error") if isinstance(parsed.get("error"), dict) else {"message": text}
            node_errors = parsed.get("node_errors") if isinstance(parsed.get("node_errors"), dict) else {}
            raise PromptRejected(url, text, error, node_errors)
        raise ComfyHTTPError(method, url, status, text)

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

    def folder_paths(self) -> JsonDict:
        """``GET /internal/folder_paths``: {folder: [directories]} of the server's models (where files go)."""
        return self._get_json("/internal/folder_paths")

    def history(self, prompt_id: str | None = None, max_items: int | None = None) -> JsonDict:
        """``{prompt_id: entry}`` for one prompt (empty until it finished) or for all recent ones."""
        if prompt_id is not None:
            return self._get_json("/history/" + urllib.parse.quote(prompt_id, safe=""))
        return self._get_json("/history", {"max_items": max_items} if max_items else None)

    def queue(self) -> JsonDict:
        """``{"queue_running": [...], "queue_pending": [...]}``; items are ``[number, prompt_id, ...]``."""
        return self._get_json("/queue")

    def view(self, filename: str, subfolder: str = "", type: str = "output",  # noqa: A002 - server's name
             max_bytes: int = MAX_FILE_BYTES, timeout: float | None = None) -> bytes:
        """Bytes of a file in ComfyUI's output, input or temp folder (``type``); see :meth:`download` for large
        files."""
        return self._request("GET", "/view", query={"filename": filename, "subfolder": subfolder, "type": type},
                             max_bytes=max_bytes, timeout=timeout or max(self.timeout, DOWNLOAD_SECONDS))

    def download(self, filename: str, subfolder: str, type: str, path: str | os.PathLike[str],  # noqa: A002
                 max_bytes: int = MAX_FILE_BYTES, timeout: float = DOWNLOAD_SECONDS) -> int:
        """Streams a file of the server's folders to ``path`` (through a .part file, replaced when complete);
        returns its size. Nothing is left at ``path`` when the download fails or passes ``max_bytes``."""
        self._request("GET", "/view", query={"filename": filename, "subfolder": subfolder, "type": type},
                      max_bytes=max_bytes, timeout=timeout, to_file=Path(path))
        return Path(path).stat().st_size

    # -- actions

    def upload_image(self, image: str | os.PathLike[str] | bytes, name: str | None = None,
                     overwrite: bool = False, subfolder: str = "", type: str = "input") -> str:  # noqa: A002
        """Store an image (a path, or raw bytes plus ``name``) in the server's input folder.

        Returns the name to give LoadImage: the stored file name, prefixed with ``subfolder/`` if any.
        Without ``overwrite`` the server keeps an identical file as it is and picks a free name when a different
        file has this one. ``overwrite=True`` rewrites the file in place, which a job reading it may catch half
        written.
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
