"""The service under hostile load (issue 21 items 4, 5 and 8's fetches), through a real uvicorn socket on
127.0.0.0/8: slow clients are capped per address and timed out, a body is parsed off the event loop after a
linear-time shape scan (deep nesting and huge arrays are 400, not 500 or seconds of parsing), and image downloads
never hold up a status lookup. bench/service_hostile_load.py measures the same at the issue's scale."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import pytest

from framepack_core.limits import (MAX_HOSTED_PROMPT_CHARS, MAX_NEGATIVE_PROMPT_CHARS, SERVICE_MAX_BODY_BYTES,
                                   SERVICE_MAX_DATA_URI_BYTES, SERVICE_MAX_JSON_CONTAINERS)
from framepack_service import core, intake
from framepack_service.body import parse_json
from framepack_service.intake import BadRequest


def health_from(port: int, source: str, timeout: float = 5.0) -> float:
    """Seconds for GET /health from ``source`` (another loopback address: another client)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return time.monotonic() - start


def state(sock: socket.socket) -> tuple[str, bytes]:
    """("open", b"") while the service holds the connection, ("closed", what it sent before closing) after."""
    sock.setblocking(False)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed", got
            got += chunk
    except BlockingIOError:
        return "open", got
    except OSError:
        return "closed", got


def test_slow_clients_are_capped_per_address_and_timed_out(live):
    svc = live(header_seconds=1.5, body_seconds=1.5, max_client_connections=6)
    held = []
    for _ in range(20):  # one client, 20 connections that never finish their request head
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        held.append(s)
    time.sleep(0.4)
    assert health_from(svc.port, "127.0.0.2") < 1.0  # another client is served at once
    states = [state(s) for s in held]
    assert [st for st, _ in states].count("open") == 6  # the cap per address; the rest were closed at once
    # a slow body: the head arrives, the body does not
    body = socket.create_connection(("127.0.0.1", svc.port), timeout=5, source_address=("127.0.0.3", 0))
    body.sendall(b"POST /fal-ai/framepack HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"pr")
    time.sleep(2.2)  # past header_seconds / body_seconds
    late = [state(s) for s in held]
    assert all(st == "closed" for st, _ in late)
    assert any(got.startswith(b"HTTP/1.1 408") for _, got in late)  # told why
    assert state(body)[0] == "closed"
    for s in [*held, body]:
        s.close()
    assert health_from(svc.port, "127.0.0.1") < 1.0  # the slow client's address is served again once they are gone


def test_a_body_is_shape_checked_before_it_is_parsed():
    flat = {"image": "data:image/png;base64,AAAA", "prompt": 'a "quoted" [bracketed] {braced}, prompt',
            "negative_prompt": "\\" * MAX_NEGATIVE_PROMPT_CHARS, "seed": 3, "enable_safety_checker": True}
    assert parse_json(json.dumps(flat).encode()) == flat
    deep = b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # json.loads: RecursionError (a 500 before)
    with pytest.raises(BadRequest, match="arrays or objects"):
        parse_json(deep)
    nested = b'{"a": ' + b"[" * (SERVICE_MAX_JSON_CONTAINERS) + b"]" * SERVICE_MAX_JSON_CONTAINERS + b"}"
    with pytest.raises(BadRequest, match=f"{SERVICE_MAX_JSON_CONTAINERS + 1} arrays or objects"):
        parse_json(nested)
    with pytest.raises(BadRequest, match="values"):
        parse_json(b"[" + b"0," * 1_000_000 + b"0]")  # 2 MB of zeros: a million objects for the parser
    with pytest.raises(BadRequest, match="quote characters"):
        parse_json(b"[" + b'"",' * 10_000 + b'""]')
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_json(b'{"prompt": "unterminated}')


def test_the_body_cap_fits_two_data_uri_images_and_the_prompts_and_no_more():
    image = base64.b64encode(b"\0" * SERVICE_MAX_DATA_URI_BYTES).decode()
    body = {"image_url": "data:image/png;base64," + image, "end_image_url": "data:image/jpeg;base64," + image,
            "prompt": "\U0001f600" * MAX_HOSTED_PROMPT_CHARS,  # 12 bytes each as JSON escapes
            "negative_prompt": "\u2028" * MAX_NEGATIVE_PROMPT_CHARS, "seed": 2147483647, "num_frames": 1800,
            "num_inference_steps": 50, "guidance_scale": 32.0, "cfg_scale": 7.0, "strength": 0.8,
            "resolution": "custom", "width": 2048, "height": 2048, "aspect_ratio": "auto",
            "enable_safety_checker": False}
    size = len(json.dumps(body).encode())
    assert size <= SERVICE_MAX_BODY_BYTES < size + 64 * 1024  # what a request can need, with a little room
    assert SERVICE_MAX_BODY_BYTES < 47_000_000  # the 47 MB array is refused before it is read


def test_bodies_are_parsed_and_images_fetched_off_the_event_loop(live, monkeypatch):
    """A slow parse and 45 slow image downloads at once: /health and status lookups answer meanwhile (before,
    the parse ran on the loop, and the downloads in the threads that answer the lookups: 40 of them)."""
    parsed_in, release = [], threading.Event()

    def slow_parse(raw):
        parsed_in.append(threading.current_thread().name)
        release.wait(5)
        return {"bad": 1}

    monkeypatch.setattr(core, "parse_json", slow_parse)
    svc = live(max_client_connections=0)
    threading.Thread(target=svc.call, args=("POST", "/api/v3/wavespeed-ai/framepack", {"x": 1}), daemon=True).start()
    time.sleep(0.3)
    took = health_from(svc.port, "127.0.0.2")
    release.set()
    assert parsed_in and took < 1.0  # the loop answered while the parse waited

    monkeypatch.undo()
    fetching, release = [], threading.Event()

    def slow_fetch(source, policy, resolver):
        fetching.append(source)
        release.wait(10)
        raise intake.FetchError("the download took too long")

    monkeypatch.setattr(intake, "load_image", slow_fetch)
    body = {"image": "https://images.example/a.png", "prompt": "p"}
    senders = [threading.Thread(target=svc.call, args=("POST", "/api/v3/wavespeed-ai/framepack", body), daemon=True)
               for _ in range(45)]
    for t in senders:
        t.start()
    time.sleep(1.0)
    start = time.monotonic()
    status, answer = svc.call("GET", "/api/v3/predictions/" + "0" * 32 + "/result")
    took = time.monotonic() - start
    in_flight = len(fetching)
    release.set()
    for t in senders:
        t.join(30)
    assert status == 404 and answer["code"] == 404 and took < 1.0, took
    assert in_flight == svc.service.config.fetch_workers  # the rest wait for a download thread, not a lookup's
