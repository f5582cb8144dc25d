"""The local service for tests, on a real loopback socket: in this process (uvicorn in a thread) or as its own
process (``python -m framepack_client serve``, as a user starts it, to be killed and started again). Both answer
:meth:`call`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Calls:
    url: str
    key: str | None = None

    def call(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None,
             auth: bool = True) -> tuple[int, dict]:
        """(HTTP status, JSON answer); sends the service's key (as Bearer) unless ``auth`` is off or headers
        carry an Authorization of their own."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = dict(headers or {})
        if auth and self.key and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def download(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key}"} if self.key else {})
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()

    def wait_for(self, predicate, what: str, timeout: float = 600.0, interval: float = 0.2):
        """Polls ``predicate()`` until it returns something truthy (returned); fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(interval)


class LiveService(_Calls):
    """The service in this process, over ``comfy_urls``, with its data in ``data_dir``."""

    def __init__(self, comfy_urls: list[str], data_dir: Path, log_level: str = "warning", **config):
        import uvicorn

        from framepack_service.app import create_app
        from framepack_service.connections import uvicorn_config
        from framepack_service.core import Service, ServiceConfig

        self.port = free_port()
        self.key = config.get("api_key")
        self.service = Service(ServiceConfig(comfy_urls=comfy_urls, data_dir=data_dir, host="127.0.0.1",
                                             port=self.port, **config))
        self.server = uvicorn.Server(uvicorn_config(create_app(self.service), self.service.config,
                                                    log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the service did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=60)


class ServiceProcess(_Calls):
    """``python -m framepack_client serve ARGS`` on a fixed port (kept across restarts); log in ``log_path``."""

    def __init__(self, args: list[str], log_path: Path, key: str | None = None):
        self.args, self.log_path, self.key = list(args), Path(log_path), key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> "ServiceProcess":
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "framepack_client", "serve", "--port", str(self.port), *self.args],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

        def up():
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                return self.call("GET", "/health", auth=False)[0] == 200
            except OSError:
                return False

        self.wait_for(up, "the service to answer /health", timeout=timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code of the service runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
