"""The door in front of every route (plain ASGI, outside the framework, so no route code runs before it):

* With an API key: every path but the health check, the API docs and the finished videos needs
  ``Authorization: Bearer KEY`` (WaveSpeed's form) or ``Authorization: Key KEY`` (fal's); otherwise 401 in the
  contract's error shape. A video's URL (/outputs/<192-bit token>.mp4) is its own capability, as the hosted APIs'
  URLs are: a browser's ``<video src>`` or ``curl -O`` opens it without the key (it expires, core.Service.output).
* A key in the URL's query (``?key=``, ``?api_key=``, the service's key under any name) is refused with 400 and
  blanked out of the request before anything logs it (uvicorn's access log prints the query).
* Without a key: only loopback clients, addressing the service by a loopback name, are served (the service also
  refuses to listen elsewhere without a key); a web page elsewhere cannot reach it through DNS rebinding.
* The request body is read here, up to the cap (413 past it, Content-Length checked first), and handed on.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import re
import urllib.parse

from framepack_core.limits import SERVICE_MAX_DATA_URI_BYTES

from .shapes import error_body

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
OPEN_PREFIXES = ("/outputs/", "/docs/assets/")  # videos (capability URLs) and the docs' scripts
KEY_LIKE = re.compile(r"(?i)^(api[-_]?key|key|token|access[-_]?token|auth|authorization|fal[-_]?key|bearer)$")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
# After refusing a body that grew past the cap while being read, up to this much more of it is read and dropped, so
# a client still sending can finish and read the 413 (closing on unread data resets the connection instead).
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 5.0


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_without_port(value: str) -> str:
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_open_file(path: str) -> bool:
    """A video or a docs asset: one file name under an open folder (no further slash, no dot-dot)."""
    prefix = next((p for p in OPEN_PREFIXES if path.startswith(p)), None)
    return prefix is not None and "/" not in path[len(prefix):] and ".." not in path


def key_matches(header: str, key: str) -> bool:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "key"):
        return False
    return hmac.compare_digest(token.strip().encode("utf-8", "replace"), key.encode("utf-8"))


class Gate:
    def __init__(self, app, *, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.key_in_query(scope) or self.refusal(scope, path, headers)
        if refusal is not None:
            return await self._reply(send, path, *refusal)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return await self._too_large(send, path)
        body, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                if message.get("more_body", False):
                    await self._drain(receive)
                return await self._too_large(send, path)
            body.append(chunk)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed, send)

    def key_in_query(self, scope) -> tuple[int, str] | None:
        """400 when the query carries a key; the scope's query is blanked in place first, so that the access log
        (which prints this same scope) never holds it."""
        query = scope.get("query_string", b"").decode("latin-1")
        if not query:
            return None
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if not any(KEY_LIKE.match(name) or (self.api_key and self.api_key in value) for name, value in pairs) \
                and not (self.api_key and self.api_key in urllib.parse.unquote(query)):
            return None
        scope["query_string"] = b"query-withheld"
        return 400, ("an API key was sent in the URL, where logs and browser histories keep it; send it only in the "
                     "header 'Authorization: Bearer KEY' (or 'Authorization: Key KEY'), and replace a key that was "
                     "exposed this way")

    def refusal(self, scope, path: str, headers: dict) -> tuple[int, str] | None:
        if self.api_key is None:
            client = (scope.get("client") or ("", 0))[0]
            if not is_loopback(client) or not is_loopback(host_without_port(headers.get("host", ""))):
                return 403, ("this service answers only loopback requests to 127.0.0.1 or localhost (it has no API "
                             "key; its operator can set one to serve other hosts)")
            return None
        if path in OPEN_PATHS or is_open_file(path) or \
                key_matches(headers.get("authorization", ""), self.api_key):
            return None
        return 401, ("missing or wrong API key: send the header 'Authorization: Bearer KEY' (WaveSpeed style) or "
                     "'Authorization: Key KEY' (fal style) with the key the service was started with")

    @staticmethod
    async def _drain(receive) -> None:
        async def read_rest():
            dropped = 0
            while dropped <= LINGER_BYTES:
                message = await receive()
                dropped += len(message.get("body", b""))
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(read_rest(), LINGER_SECONDS)
        except asyncio.TimeoutError:
            pass

    async def _too_large(self, send, path: str):
        await self._reply(send, path, 413, f"the request body is larger than the limit of {self.max_body_bytes} "
                                           f"bytes; send images as http(s) URLs, or as data: URIs of at most "
                                           f"{SERVICE_MAX_DATA_URI_BYTES // 1024 ** 2} MiB each")

    @staticmethod
    async def _reply(send, path: str, status: int, message: str):
        payload = json.dumps(error_body(path, status, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="framepack", Key realm="framepack"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
