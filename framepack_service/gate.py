"""The door in front of every route (plain ASGI, outside the framework, so no route code runs before it):

* With an API key: every path but the health check and the API docs needs ``Authorization: Bearer KEY``
  (WaveSpeed's form) or ``Authorization: Key KEY`` (fal's); otherwise 401 in the contract's error shape.
* Without a key: only loopback clients, addressing the service by a loopback name, are served (the service also
  refuses to listen elsewhere without a key); a web page elsewhere cannot reach it through DNS rebinding.
* The request body is read here, up to the cap (413 past it, Content-Length checked first), and handed on.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json

from .shapes import error_body

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
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
        refusal = self.refusal(scope, path, headers)
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

    def refusal(self, scope, path: str, headers: dict) -> tuple[int, str] | None:
        if self.api_key is None:
            client = (scope.get("client") or ("", 0))[0]
            if not is_loopback(client) or not is_loopback(host_without_port(headers.get("host", ""))):
                return 403, ("this service has no API key, so it answers only loopback requests to 127.0.0.1 or "
                             "localhost; start it with --api-key (or FRAMEPACK_API_KEY) to serve other hosts")
            return None
        if path in OPEN_PATHS or key_matches(headers.get("authorization", ""), self.api_key):
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
                                           "bytes; send images as http(s) URLs, or raise --max-body-mb")

    @staticmethod
    async def _reply(send, path: str, status: int, message: str):
        payload = json.dumps(error_body(path, status, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="framepack", Key realm="framepack"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
