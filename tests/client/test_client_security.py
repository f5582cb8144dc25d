"""The client against a server, a redirect or a parameter file it cannot trust (all on 127.0.0.0/8): one deadline
for a whole exchange even when the server trickles bytes, capped replies and websocket messages, redirects only to
http(s) and never from https to http, images sized from their header before upload, no local paths from untrusted
input, server text printed without control characters, job ids checked before they name files, and no credentials
in a server address."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from framepack_client import cli
from framepack_client.errors import ComfyProtocolError, ComfyTimeout
from framepack_client.fetch import FetchError, UrlPolicy, fetch_url
from framepack_client.hosted import HostedParams, ValidationError
from framepack_client.images import ImageProblem, check_image, image_size
from framepack_client.jobs import JobError, JobStore
from framepack_client.server_api import ComfyClient, EventStream, check_server_url
from framepack_client.terminal import printable
from framepack_client.websocket_limits import MessageTooLarge, _CappedFrames

TLS = Path(__file__).resolve().parents[1] / "data" / "loopback_tls"
LOCAL = UrlPolicy(allow_private=True, timeout=10.0, name_addresses=True)  # the client's policies name addresses


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk (what the size check reads); no pixel data follows."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


class Server:
    """A loopback HTTP(S) server whose GET handler is ``handler(request_handler)``."""

    def __init__(self, handler, tls: bool = False):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                handler(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def make(handler, tls: bool = False):
        servers.append(Server(handler, tls))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def redirect(location: str):
    def handle(req):
        req.send_response(302)
        req.send_header("Location", location)
        req.end_headers()
    return handle


# -- replies: deadline and size -------------------------------------------------------------------------------------

def test_a_trickling_server_cannot_outlast_the_deadline(serve):
    """One byte every 0.2 s: each read is quick, so a per-read timeout never fires; the exchange's deadline does."""
    stop = threading.Event()

    def trickle(req):
        req.send_response(200)
        req.send_header("Content-Length", "1000")
        req.end_headers()
        for _ in range(1000):
            if stop.is_set():
                return
            try:
                req.wfile.write(b" ")
                req.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)

    server = serve(trickle)
    started = time.monotonic()
    with pytest.raises(ComfyTimeout, match="no complete answer within 1 s"):
        ComfyClient(server.url, timeout=1.0).queue()
    stop.set()
    assert time.monotonic() - started < 5


def test_replies_over_the_cap_are_refused(serve, tmp_path):
    body = json.dumps({"x": "y" * 5000}).encode()

    def big(req, declare=True):
        req.send_response(200)
        if declare:
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    declared = serve(big)
    with pytest.raises(ComfyProtocolError, match="the limit is 1000 bytes"):
        ComfyClient(declared.url, max_json_bytes=1000).queue()
    assert ComfyClient(declared.url, max_json_bytes=len(body)).queue()["x"] == "y" * 5000
    # no Content-Length: counted while streaming; a download over the cap leaves no file behind
    undeclared = serve(lambda req: big(req, declare=False))
    target = tmp_path / "out.mp4"
    with pytest.raises(ComfyProtocolError):
        ComfyClient(undeclared.url).download("v.mp4", "", "output", target, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []
    assert ComfyClient(undeclared.url).download("v.mp4", "", "output", target, max_bytes=len(body)) == len(body)


def test_a_websocket_frame_over_the_cap_is_refused_from_its_header():
    """The declared length (here 2^40 bytes) is checked before any payload is read."""
    header = bytes([0x81, 127]) + struct.pack(">Q", 1 << 40)
    fed = [header[:2], header[2:]]
    frames = _CappedFrames(lambda n: fed.pop(0) if fed else pytest.fail("payload read"), False, cap=1024)
    with pytest.raises(MessageTooLarge, match="the limit is 1024"):
        frames.recv_frame()


def test_a_trickled_websocket_frame_cannot_outlast_the_wait(monkeypatch):
    """A websocket server that declares a 200-byte text frame and sends one byte every 0.05 s: every receive gets a
    byte in time, so a per-receive timeout never fires; the wait for the message ends at its deadline."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_one():
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            conn.sendall(bytes([0x81, 126]) + struct.pack(">H", 200))
            for _ in range(200):
                if stop.wait(0.05):
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    threading.Thread(target=serve_one, daemon=True).start()
    stream = EventStream(f"ws://127.0.0.1:{listener.getsockname()[1]}/ws", connect_timeout=5)
    try:
        started = time.monotonic()
        assert stream.next(timeout=1.0) is None
        waited = time.monotonic() - started
        assert 0.9 <= waited < 5.0, waited  # the whole frame would take 10 s
    finally:
        stop.set()
        stream.close()
        listener.close()


# -- redirects --------------------------------------------------------------------------------------------------------

def test_redirects_only_to_http_and_never_from_https_to_http(serve, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "cert.pem"))
    image = png_header(4, 4)
    plain = serve(lambda req: (req.send_response(200), req.end_headers(), req.wfile.write(image)))
    to_ftp = serve(redirect("ftp://127.0.0.1/x.png"))
    with pytest.raises(FetchError, match="redirects to a ftp URL"):
        fetch_url(to_ftp.url + "/a.png", LOCAL)
    to_file = serve(redirect("file:///etc/hostname"))
    with pytest.raises(FetchError, match="redirects to a file URL"):
        fetch_url(to_file.url + "/a.png", LOCAL)
    downgrade = serve(redirect(plain.url + "/a.png"), tls=True)
    with pytest.raises(FetchError, match="from https to plain http"):
        fetch_url(downgrade.url + "/a.png", LOCAL)
    # the same http target is fine when the redirect comes from http, and over https directly
    assert fetch_url(serve(redirect(plain.url + "/a.png")).url, LOCAL) == image
    https_image = serve(lambda req: (req.send_response(200), req.end_headers(), req.wfile.write(image)), tls=True)
    assert fetch_url(https_image.url + "/a.png", LOCAL) == image


def test_a_public_server_never_redirects_into_the_local_network(serve, monkeypatch):
    """A host whose name resolves to a public address (a stand-in resolver; the connection itself is routed to a
    loopback server, so no traffic leaves 127.0.0.0/8) redirects to a loopback URL: refused, even under a policy
    that fetches local addresses when asked for them directly."""
    image = png_header(4, 4)
    local = serve(lambda req: (req.send_response(200), req.end_headers(), req.wfile.write(image)))
    front = serve(redirect(local.url + "/a.png"))
    front_port = int(front.url.rsplit(":", 1)[1])
    public = "93.184.215.14"
    real_connect = socket.create_connection
    dialled = []

    def loopback_only(address, *args, **kwargs):
        dialled.append(address)
        host, port = address
        return real_connect(("127.0.0.1", port if host != public else front_port), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)
    resolver = lambda host, port: [public] if host == "public.example" else [host]  # noqa: E731
    with pytest.raises(FetchError, match="redirects to http://127.0.0.1:.*, and a public server sends it to "
                                         "127.0.0.1, a loopback address"):
        fetch_url(f"http://public.example:{front_port}/a.png", LOCAL, resolver=resolver)
    assert dialled == [(public, front_port)]  # the redirect's local target was never contacted
    # the same redirect from a local server stays local and is followed under this policy
    assert fetch_url(front.url + "/a.png", LOCAL, resolver=resolver) == image


def test_untrusted_policy_refuses_loopback_before_connecting(serve):
    hits = []
    server = serve(lambda req: hits.append(req.path))
    with pytest.raises(FetchError, match="loopback address"):
        fetch_url(server.url + "/a.png", UrlPolicy(allow_private=False, timeout=5.0, name_addresses=True))
    assert hits == []


# -- images and parameter files -------------------------------------------------------------------------------------

def test_a_huge_image_is_refused_from_its_header(tmp_path):
    """13000 x 13000 in a few dozen bytes: refused from the header, before anything is decoded or uploaded."""
    assert image_size(png_header(13000, 13000)) == ("png", 13000, 13000)
    with pytest.raises(ImageProblem, match="13000x13000 pixels; the limit is"):
        check_image(png_header(13000, 13000))
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(13000, 13000))
    with pytest.raises(ValidationError, match="13000x13000"):
        HostedParams.from_mapping({"image": str(path), "prompt": "p"})
    path.write_bytes(b"BM" + b"\x00" * 40)  # two magic bytes are not an image
    with pytest.raises(ValidationError, match="does not decode as an image"):
        HostedParams.from_mapping({"image": str(path), "prompt": "p"})


def test_untrusted_input_may_not_name_local_files(tmp_path):
    from PIL import Image

    start_png = tmp_path / "start.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(start_png)
    assert HostedParams.from_mapping({"image": str(start_png), "prompt": "p"}).image == str(start_png)
    with pytest.raises(ValidationError, match="local file paths are not accepted"):
        HostedParams.from_mapping({"image": str(start_png), "prompt": "p"}, local_files=False)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"image": "/etc/hostname", "prompt": "p"}))
    code = cli.main(["submit", "--params", str(params), "--untrusted-input", "--jobs-dir", str(tmp_path / "jobs"),
                     "--server", "http://127.0.0.1:9"])
    assert code == cli.EXIT_INVALID and not (tmp_path / "jobs").exists()


# -- what is printed and stored -------------------------------------------------------------------------------------

def test_server_text_is_printed_without_control_characters():
    hostile = "node\x1b]0;pwned\x07\x1b[2J\u202eevil\r"
    shown = printable(hostile)
    assert not any(ord(c) < 32 or c == "\u202e" for c in shown)
    assert "\\x1b" in shown and "\\u202e" in shown and "node" in shown
    assert printable("a\nb\tc", keep_newlines=True) == "a\nb\tc"
    assert printable("a\nb") == "a\\x0ab"


def test_job_ids_are_checked_before_they_name_files(tmp_path):
    store = JobStore(tmp_path)
    with pytest.raises(JobError, match="not a job id"):
        store.path("../../escape")
    good, other = "a" * 32, "b" * 32
    (tmp_path / f"{good}.json").write_text(json.dumps({"id": "../../escape", "server": "http://127.0.0.1:8188"}))
    with pytest.raises(JobError, match="names the job"):
        store.load(good)
    (tmp_path / f"{good}.json").write_text(json.dumps({"id": other, "server": "http://127.0.0.1:8188"}))
    with pytest.raises(JobError, match="names the job"):
        store.load(good)


@pytest.mark.parametrize("url", ["http://user:secret@127.0.0.1:8188", "http://token@127.0.0.1:8188",
                                 "ftp://127.0.0.1", "http://127.0.0.1:8188/?a=b", "127.0.0.1:8188"])
def test_server_addresses_with_credentials_or_odd_forms_are_refused(url, tmp_path, capsys):
    with pytest.raises(ValueError):
        check_server_url(url)
    code = cli.main(["status", "a" * 32, "--server", url, "--jobs-dir", str(tmp_path)])
    assert code == cli.EXIT_INVALID
    out = capsys.readouterr()
    assert "secret" not in out.out and list(tmp_path.iterdir()) == []
    assert check_server_url("http://127.0.0.1:8188/") == "http://127.0.0.1:8188"
