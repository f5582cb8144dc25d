"""Images (and videos to continue) given as an http(s) URL or a ``data:`` URI, fetched under rules that keep a
request from turning the client or the service into a proxy into the network it sits in. The client (its own user's
URLs) and the service (anyone's URLs) use this one fetcher with different policies.

* http and https only; at most ``max_redirects`` redirects, each new location checked like the first URL; a
  redirect from https to http is refused, and so is one from a public address into a non-public one (a public server
  has no business sending us into the local network), whatever the policy allows for URLs given directly.
* The host name is resolved once and every address it resolves to is checked; the connection then goes to that
  checked address (a second lookup could answer differently). Loopback, private, link-local, multicast, reserved
  and other not globally routable addresses are refused unless the policy allows them.
* One deadline for the whole fetch, redirects included (framepack_client.transfer), and a byte cap
  (Content-Length is checked first, then the bytes read).
* What arrives must be an image within the pixel caps (framepack_client.images: the header's size first); a
  video is checked by the caller (framepack_client.media), under a policy with a larger byte cap.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Iterable

from framepack_core.limits import SERVICE_MAX_IMAGE_BYTES, SERVICE_URL_SECONDS

from .images import ImageProblem
from .images import check_image as check_image_bytes
from .transfer import Exchange, TransferTimeout, TransferTooLarge

REDIRECTS = (301, 302, 303, 307, 308)
# said to the service's callers, who cannot change its options (its operator allows networks with
# --allow-private-urls / --allow-url-network)
SERVICE_ALLOW_HINT = "send the image from a public URL or as a data: URI"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]


class FetchError(ValueError):
    """The image could not be used; the message names the URL (shortened) and what to do."""


@dataclass(frozen=True)
class UrlPolicy:
    allow_private: bool = False  # allow loopback / private / link-local addresses (--allow-private-urls)
    allowed_networks: tuple = ()  # ip_network objects allowed even when allow_private is off
    timeout: float = SERVICE_URL_SECONDS  # seconds for the whole fetch, redirects included
    max_bytes: int = SERVICE_MAX_IMAGE_BYTES  # the defaults are the service's: the client passes its own
    max_redirects: int = 5
    user_agent: str = field(default="framepack-service")
    allow_hint: str = SERVICE_ALLOW_HINT  # how the user of this policy allows a refused address
    accept: str = "image/*"  # the Accept header: what the caller wants back
    # say which address a refused host resolves to (the client's own user); the service's callers are told only
    # that it is not public, so a refusal does not map the service's network for them
    name_addresses: bool = False


def refusal_reason(address: str | IpAddress) -> str | None:
    """Why an address is not a public internet address ("loopback", "private", "link-local", ...), or None when
    it is globally routable. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for name, test in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if test:
            return name
    if not ip.is_global:
        return "not globally routable"
    return None


def check_address(address: str, policy: UrlPolicy, redirected_from_public: bool = False) -> None:
    """Raises FetchError when the policy refuses ``address``; a redirect that leaves a public address for a
    non-public one is refused whatever the policy allows."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    reason = refusal_reason(ip)
    if reason is None:
        return
    where = f"{ip}, a {reason} address" if policy.name_addresses else "an address that is not public"
    if redirected_from_public:
        raise FetchError(f"a public server sends it to {where}, which is never followed")
    if policy.allow_private or any(ip in net for net in policy.allowed_networks if net.version == ip.version):
        return
    raise FetchError(f"its host resolves to {where}, which is not fetched from ({policy.allow_hint})")


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise FetchError(f"the host {host!r} cannot be resolved ({err.strerror})") from err
    return list(dict.fromkeys(info[4][0] for info in infos))


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address chosen beforehand (the checked one), whatever the host name says."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


def _split(url: str) -> tuple[str, str, int, str]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError("only http and https URLs are fetched")
    try:
        host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
    except ValueError as err:
        raise FetchError(f"the URL's port is not valid ({err})") from err
    if not host:
        raise FetchError("the URL has no host; give a full http(s)://host/path URL")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, target


def fetch_url(url: str, policy: UrlPolicy, resolver: Resolver = system_resolver) -> bytes:
    """The body of ``url`` under ``policy`` (see the module docstring); FetchError otherwise."""
    deadline = time.monotonic() + policy.timeout
    from_public = redirected = False
    for _ in range(policy.max_redirects + 1):
        scheme, host, port, target = _split(url)
        addresses = list(resolver(host, port))
        if not addresses:
            raise FetchError(f"the host {host!r} resolves to no address")
        try:
            for address in addresses:
                check_address(address, policy, redirected_from_public=from_public)
        except FetchError as err:
            if redirected:  # name the hop that was refused, not only the URL the caller gave
                raise FetchError(f"it redirects to {short(url)}, and {err}") from None
            raise
        kind = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
        conn = kind(host, port, addresses[0], timeout=max(0.001, deadline - time.monotonic()))
        try:
            with Exchange(conn, deadline) as exchange:
                response = exchange.send("GET", target, headers={"User-Agent": policy.user_agent,
                                                                 "Accept": policy.accept})
                if response.status in REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchError(f"redirect {response.status} without a Location")
                    url = _redirect_target(url, scheme, location)
                    from_public, redirected = all(refusal_reason(a) is None for a in addresses), True
                    continue
                if response.status != 200:
                    raise FetchError(f"the server answered HTTP {response.status}")
                return exchange.read(response, policy.max_bytes)
        except TransferTimeout as err:
            raise FetchError(f"the download took longer than {policy.timeout:g} s") from err
        except TransferTooLarge as err:
            if err.size is not None:
                raise FetchError(f"it is {err.size} bytes; the limit is {policy.max_bytes} bytes") from err
            raise FetchError(f"it is larger than the limit of {policy.max_bytes} bytes") from err
        except (OSError, http.client.HTTPException) as err:
            raise FetchError(f"the download failed ({err or type(err).__name__})") from err
    raise FetchError(f"more than {policy.max_redirects} redirects")


def _redirect_target(url: str, scheme: str, location: str) -> str:
    target = urllib.parse.urljoin(url, location)
    new_scheme = urllib.parse.urlsplit(target).scheme.lower()
    if new_scheme not in ("http", "https"):
        raise FetchError(f"it redirects to a {new_scheme or 'schemeless'} URL ({short(target)}); only http and "
                         "https are fetched")
    if scheme == "https" and new_scheme == "http":
        raise FetchError(f"it redirects from https to plain http ({short(target)}), which is refused (the image "
                         "would travel unencrypted); give the final https URL")
    return target


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:[<type>][;base64],<data>`` URI (base64 or percent-encoded), capped."""
    head, sep, payload = uri.partition(",")
    if not sep:
        raise FetchError("a data: URI needs a comma before its data (data:image/png;base64,...)")
    if len(payload) > max_bytes * 4 // 3 + 8:
        raise FetchError(f"the data: URI holds more than the limit of {max_bytes} bytes")
    if head.lower().endswith(";base64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as err:
            raise FetchError(f"the data: URI is not valid base64 ({err})") from err
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise FetchError(f"the data: URI holds more than the limit of {max_bytes} bytes")
    return data


def check_image(data: bytes) -> str:
    """The image kind ("png", "jpeg", ...) when ``data`` is an image within the size limits; FetchError
    otherwise."""
    try:
        return check_image_bytes(data)
    except ImageProblem as err:
        raise FetchError(str(err)) from err


def is_image_source(value: object) -> bool:
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://", "data:"))


def load_source(value: str, policy: UrlPolicy, resolver: Resolver = system_resolver) -> bytes:
    """The bytes of an http(s) URL (fetched under ``policy``) or a data: URI (capped at ``policy.max_bytes``),
    unchecked; FetchError says why not."""
    if value[:5].lower() == "data:":
        return decode_data_uri(value, policy.max_bytes)
    return fetch_url(value, policy, resolver)


def load_image(value: str, policy: UrlPolicy, resolver: Resolver = system_resolver) -> tuple[bytes, str]:
    """(bytes, kind) of an image given as an http(s) URL or a data: URI; FetchError says why not."""
    data = load_source(value, policy, resolver)
    return data, check_image(data)
