"""The service without ComfyUI: address classification, URL fetching rules (against local servers on
127.0.0.0/8 only), data: URIs, the contracts' defaults and error shapes, the job store, the key / loopback gate
and the body cap, through a real uvicorn socket. The servers behind the service are never reached here (the
service points at a closed port); tests/comfy/test_service_e2e.py runs jobs."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from framepack_client import cli
from framepack_client import fetch
from framepack_service.gate import host_without_port, is_loopback, key_matches
from framepack_service.intake import FAL_FLF2V, FAL_I2V, WAVESPEED, BadRequest, check_body
from framepack_service.store import QUEUED, JobRecord, JobStore


def png_bytes(size=(24, 16), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


# -- local image servers (127.0.0.0/8 only) ---------------------------------------------------------------------------

class ImageServer:
    """An HTTP server on a loopback address that records every request; serves a PNG, or redirects."""

    def __init__(self, host: str = "127.0.0.1", redirect_to: str | None = None, body: bytes | None = None):
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                owner.requests.append(self.path)
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                payload = png_bytes() if body is None else body
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def image_server():
    servers = []

    def make(**kw):
        servers.append(ImageServer(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def no_sockets(monkeypatch):
    """Any attempt to open a connection fails the test (for checks that must refuse before connecting)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")
    monkeypatch.setattr(socket, "create_connection", refuse)


# -- address classification (offline: pure functions) -----------------------------------------------------------------

@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("127.5.6.7", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("172.31.255.1", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "not globally routable"), ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("8.8.8.8", None), ("1.1.1.1", None), ("2606:4700:4700::1111", None), ("172.32.0.1", None),
])
def test_addresses_are_classified(address, reason):
    assert fetch.refusal_reason(address) == reason


def test_policy_allows_by_flag_or_network():
    strict = fetch.UrlPolicy(name_addresses=True)  # the client's policies name the address
    with pytest.raises(fetch.FetchError, match="10.0.0.5, a private address"):
        fetch.check_address("10.0.0.5", strict)
    fetch.check_address("8.8.8.8", strict)
    fetch.check_address("10.0.0.5", fetch.UrlPolicy(allow_private=True))
    some = fetch.UrlPolicy(allowed_networks=(ipaddress.ip_network("10.0.0.0/24"),), name_addresses=True)
    fetch.check_address("10.0.0.5", some)
    with pytest.raises(fetch.FetchError, match="private"):
        fetch.check_address("10.0.1.5", some)


def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(no_sockets):
    asked = []

    def resolver(host, port):
        asked.append((host, port))
        return ["93.184.215.14", "192.168.0.10"]  # one public, one private: any private one refuses

    with pytest.raises(fetch.FetchError, match="192.168.0.10, a private address"):
        fetch.fetch_url("https://images.example.test/a.png", fetch.UrlPolicy(name_addresses=True), resolver)
    assert asked == [("images.example.test", 443)]
    for url, text in (("ftp://x.test/a.png", "only http and https"), ("http:///a.png", "no host"),
                      ("http://x.test:99999/a", "port")):
        with pytest.raises(fetch.FetchError, match=text):
            fetch.fetch_url(url, fetch.UrlPolicy(), resolver)


def test_loopback_url_is_refused_without_a_request_then_fetched_when_allowed(image_server):
    server = image_server()
    with pytest.raises(fetch.FetchError, match="127.0.0.1, a loopback address"):
        fetch.load_image(server.url + "/a.png", fetch.UrlPolicy(name_addresses=True))
    assert server.requests == []
    data, kind = fetch.load_image(server.url + "/a.png", fetch.UrlPolicy(allow_private=True))
    assert kind == "png" and data == png_bytes() and server.requests == ["/a.png"]


def test_redirects_are_checked_again(image_server):
    target = image_server(host="127.0.0.2")
    hop = image_server(redirect_to=target.url + "/b.png")
    only_first = fetch.UrlPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),), name_addresses=True)
    with pytest.raises(fetch.FetchError, match=f"redirects to {target.url}/b.png, and .*127.0.0.2, a loopback"):
        fetch.fetch_url(hop.url + "/a.png", only_first)
    assert hop.requests == ["/a.png"] and target.requests == []
    assert fetch.fetch_url(hop.url + "/a.png", fetch.UrlPolicy(allow_private=True)) == png_bytes()
    assert target.requests == ["/b.png"]
    loop = image_server()
    loop_url = loop.url + "/loop"
    loop.httpd.RequestHandlerClass.do_GET = lambda h: (h.send_response(302), h.send_header("Location", loop_url),
                                                       h.end_headers())
    with pytest.raises(fetch.FetchError, match="more than 2 redirects"):
        fetch.fetch_url(loop_url, fetch.UrlPolicy(allow_private=True, max_redirects=2))


def test_byte_cap_and_image_check(image_server):
    big = image_server(body=png_bytes((600, 600)))
    with pytest.raises(fetch.FetchError, match="limit is 1000 bytes"):
        fetch.fetch_url(big.url, fetch.UrlPolicy(allow_private=True, max_bytes=1000))
    text = image_server(body=b"<html>not an image</html>")
    with pytest.raises(fetch.FetchError, match="not a PNG, JPEG"):
        fetch.load_image(text.url, fetch.UrlPolicy(allow_private=True))
    with pytest.raises(fetch.FetchError, match="does not decode"):
        fetch.check_image(png_bytes()[:60])  # a PNG header with the data cut off


def test_data_uris():
    assert fetch.load_image(data_uri(png_bytes()), fetch.UrlPolicy()) == (png_bytes(), "png")
    with pytest.raises(fetch.FetchError, match="not valid base64"):
        fetch.decode_data_uri("data:image/png;base64,@@@@", 1000)
    with pytest.raises(fetch.FetchError, match="more than the limit"):
        fetch.decode_data_uri(data_uri(b"x" * 5000), 1000)
    with pytest.raises(fetch.FetchError, match="needs a comma"):
        fetch.decode_data_uri("data:image/png;base64", 1000)


# -- contracts ---------------------------------------------------------------------------------------------------------

def test_contract_defaults_are_the_hosted_ones():
    url = "https://example.test/a.png"
    ws = check_body(WAVESPEED, {"image": url, "prompt": "p"})
    # WaveSpeed's page: aspect_ratio 16:9, resolution 720p, num_inference_steps 25, num_frames 180, guidance 10
    assert (ws["aspect_ratio"], ws["resolution"], ws["num_inference_steps"], ws["num_frames"],
            ws["guidance_scale"], ws["seed"]) == ("16:9", "720p", 25, 180, 10, -1)
    flf = check_body(FAL_FLF2V, {"image_url": url, "end_image_url": url, "prompt": "p"})
    # fal's page: resolution 480p, cfg_scale 1, guidance_scale 10, num_frames 240, strength 0.8, safety off
    assert (flf["resolution"], flf["cfg_scale"], flf["guidance_scale"], flf["num_frames"], flf["strength"],
            flf["enable_safety_checker"], flf["aspect_ratio"]) == ("480p", 1, 10, 240, 0.8, False, "16:9")
    i2v = check_body(FAL_I2V, {"image_url": url, "prompt": "p"})
    assert (i2v["resolution"], i2v["num_frames"]) == ("480p", 180) and "strength" not in i2v


def test_contract_errors_name_the_contract_fields():
    with pytest.raises(BadRequest) as err:
        check_body(FAL_FLF2V, {"image_url": "/etc/passwd", "prompt": "x" * 501, "cfg_scale": 7.5, "strength": 2,
                               "image": "https://example.test/a.png"})
    fields = {name for name, _ in err.value.problems}
    assert fields == {"image_url", "end_image_url", "prompt", "cfg_scale", "strength", "image"}
    text = str(err.value)
    assert "image_url must be an http(s) URL or a data: URI" in text  # never a file on the service's machine
    assert "end_image_url is required" in text and "prompt has 501 characters" in text
    assert "cfg_scale 7.5 is out of range; use a value from 0 to 7" in text
    assert "unknown parameter 'image'" in text
    with pytest.raises(BadRequest, match="num_inference_steps 3 is out of range"):
        check_body(WAVESPEED, {"image": "https://example.test/a.png", "prompt": "p", "num_inference_steps": 3})
    with pytest.raises(BadRequest, match="seed 2147483648 is out of range"):
        check_body(WAVESPEED, {"image": "https://example.test/a.png", "prompt": "p", "seed": 2147483648})
    with pytest.raises(BadRequest, match="aspect_ratio '4:3' is not one of"):
        check_body(WAVESPEED, {"image": "https://example.test/a.png", "prompt": "p", "aspect_ratio": "4:3"})


# -- job store ---------------------------------------------------------------------------------------------------------

def a_record(job_id: str) -> JobRecord:
    return JobRecord(id=job_id, contract="fal", endpoint="fal-ai/framepack", params={"prompt": "p"}, seed=5,
                     workflow="w.json", model_file="m.safetensors", created_at="2026-01-01T00:00:00.000Z")


def test_store_keeps_jobs_across_reopening_and_cancels_are_not_overwritten(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    first, second = store.add(a_record("a" * 32)), store.add(a_record("b" * 32))
    assert (first.seq, second.seq) == (1, 2)
    assert store.queue_position(first) == 0 and store.queue_position(second) == 1
    stale = store.get(second.id)
    store.request_cancel(second.id)
    stale.notes.append("written by someone holding an older copy")
    store.save(stale)
    again = store.get(second.id)
    assert again.cancel_requested and again.notes == ["written by someone holding an older copy"]
    first.status, first.outputs = "completed", [{"token": "t" * 32, "file": "x/y.mp4", "size": 3,
                                                 "content_type": "video/mp4"}]
    store.save(first)
    store.close()
    reopened = JobStore(tmp_path / "jobs.sqlite3")
    assert [j.id for j in reopened.active()] == [second.id] and reopened.get(second.id).status == QUEUED
    assert reopened.by_output_token("t" * 32)[0].id == first.id
    assert reopened.by_output_token("u" * 32) is None


# -- the gate ----------------------------------------------------------------------------------------------------------

def test_gate_helpers():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "example.com", "127.0.0.1.example.com", ""))
    assert [host_without_port(h) for h in ("a:80", "[::1]:8000", "::1", "b")] == ["a", "::1", "::1", "b"]
    assert key_matches("Bearer k1", "k1") and key_matches("Key k1", "k1") and key_matches("bearer  k1 ", "k1")
    assert not key_matches("Bearer k2", "k1") and not key_matches("Basic k1", "k1") and not key_matches("", "k1")


def test_wrong_or_missing_key_is_401_and_nothing_is_stored(live):
    svc = live(api_key="right-key")
    body = {"image": data_uri(png_bytes()), "prompt": "p"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Key wrong"},
                    {"Authorization": "right-key"}):
        status, answer = svc.call("POST", "/api/v3/wavespeed-ai/framepack", body, headers, auth=False)
        assert status == 401 and answer["code"] == 401 and answer["data"] is None
        assert "Authorization: Bearer KEY" in answer["message"]
        status, answer = svc.call("POST", "/fal-ai/framepack", {"image_url": body["image"], "prompt": "p"}, headers,
                                  auth=False)
        assert status == 401 and "Authorization: Key KEY" in answer["detail"]
    assert svc.call("GET", "/service/servers", auth=False)[0] == 401
    assert svc.service.store.count() == 0
    assert svc.call("GET", "/health", auth=False) == (200, {"status": "ok"})
    status, answer = svc.call("POST", "/api/v3/wavespeed-ai/framepack", body, {"Authorization": "Bearer right-key"})
    assert status == 200 and answer["data"]["status"] == "created"
    status, _ = svc.call("POST", "/fal-ai/framepack", {"image_url": body["image"], "prompt": "p"},
                         {"Authorization": "Key right-key"})
    assert status == 200 and svc.service.store.count() == 2


def test_oversized_body_is_refused(live):
    svc = live(max_body_bytes=4096)
    small = {"image": data_uri(png_bytes()), "prompt": "p"}
    assert svc.call("POST", "/api/v3/wavespeed-ai/framepack", small)[0] == 200
    big = {"image": data_uri(b"\x89PNG\r\n\x1a\n" + b"0" * 8000), "prompt": "p"}
    status, answer = svc.call("POST", "/api/v3/wavespeed-ai/framepack", big)
    assert status == 413 and "larger than the limit of 4096 bytes" in answer["message"]
    # without Content-Length (chunked): the cap holds while reading
    chunks = iter([json.dumps(big).encode()[i:i + 1000] for i in range(0, len(json.dumps(big)), 1000)])
    request = urllib.request.Request(svc.url + "/fal-ai/framepack", data=chunks, method="POST",
                                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 413
    assert svc.service.store.count() == 1


def test_without_a_key_only_loopback_names_are_served(live):
    svc = live()
    assert svc.call("GET", "/service/servers")[0] == 200
    status, answer = svc.call("GET", "/service/servers", headers={"Host": "attacker.example:8000"})
    assert status == 403 and "loopback" in answer["detail"] and "--" not in answer["detail"]  # no option to a caller
    assert svc.call("GET", "/service/servers", headers={"Host": "localhost:1234"})[0] == 200


def test_service_refuses_loopback_image_urls_unless_allowed(live, image_server):
    images = image_server()
    strict = live()
    status, answer = strict.call("POST", "/fal-ai/framepack", {"image_url": images.url + "/a.png", "prompt": "p"})
    assert status == 422
    (problem,) = answer["detail"]
    assert problem["loc"] == ["body", "image_url"] and "resolves to an address that is not public" in problem["msg"]
    assert "loopback" not in problem["msg"] and "--allow" not in problem["msg"]  # nothing of its network, no option
    assert images.requests == [] and strict.service.store.count() == 0
    allowing = live(allow_private_urls=True)
    status, answer = allowing.call("POST", "/fal-ai/framepack", {"image_url": images.url + "/a.png", "prompt": "p"})
    assert status == 200 and images.requests == ["/a.png"]
    job = allowing.service.store.get(answer["request_id"])
    with open(job.params["image"], "rb") as f:
        assert f.read() == png_bytes()  # stored under the service's data folder, by content


def test_invalid_bodies_get_each_contracts_error_shape(live):
    svc = live()
    status, answer = svc.call("POST", "/api/v3/wavespeed-ai/framepack", raw=b"{not json")
    assert status == 400 and answer["code"] == 400 and "not valid JSON" in answer["message"]
    status, answer = svc.call("POST", "/api/v3/wavespeed-ai/framepack", {"image": "x.png", "num_frames": 10})
    assert status == 400 and answer["data"] is None
    for text in ("image must be an http(s) URL or a data: URI", "prompt is required",
                 "num_frames 10 is out of range"):
        assert text in answer["message"]
    status, answer = svc.call("POST", "/fal-ai/framepack/flf2v", {"prompt": "p", "image_url": data_uri(b"GIF89a")})
    assert status == 422 and {p["loc"][1] for p in answer["detail"]} == {"end_image_url"}
    status, answer = svc.call("POST", "/fal-ai/framepack/flf2v", {"prompt": "p", "image_url": data_uri(b"GIF89a"),
                                                                   "end_image_url": data_uri(png_bytes())})
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "image_url"]
    assert "does not decode as an image" in answer["detail"][0]["msg"]
    assert svc.call("GET", "/api/v3/predictions/" + "0" * 32 + "/result")[0] == 404
    assert svc.call("GET", "/fal-ai/framepack/requests/../../etc/status")[0] == 404
    assert svc.call("GET", "/outputs/" + "A" * 32 + ".mp4")[0] == 404
    assert svc.service.store.count() == 0


def test_serve_refuses_other_hosts_without_a_key(monkeypatch, capsys):
    monkeypatch.delenv("FRAMEPACK_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="would serve other machines without an API key"):
        cli.main(["serve", "--host", "0.0.0.0", "--comfy", "http://127.0.0.1:9"])
