"""The service under hostile load (issue 21 items 4 and 5): how long ``/health`` takes to answer while

* ``slow``: N connections from one client (127.0.0.1) send half a request header and never finish it;
* ``json``: a 47 MB JSON array (``[0,0,...]``) is POSTed with the key to the WaveSpeed submit route, once and
  four at once; also the process's peak RSS growth (VmHWM after the posts minus VmRSS before them).

The service runs as a user starts it (``python -m framepack_service``, an API key, a ComfyUI URL nobody answers),
with its soft open-files limit at 1024 (a common default; ``--nofile``). The health checker connects from
127.0.0.2, another loopback address, as a second client would. Usage:

    python bench/service_hostile_load.py --slow 1100 --json-mb 47 21 [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def health_seconds(port: int, timeout: float) -> float | None:
    """Seconds for one GET /health from 127.0.0.2 (connect included), or None when it did not answer in time."""
    start = time.monotonic()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=("127.0.0.2", 0))
        with sock:
            sock.settimeout(max(0.01, timeout - (time.monotonic() - start)))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            return None
    except OSError:
        return None
    return time.monotonic() - start


def start_service(data_dir: Path, nofile: int) -> tuple[subprocess.Popen, int]:
    port = free_port()

    def limit():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))

    env = {**os.environ, "PYTHONPATH": str(REPO), "FRAMEPACK_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "framepack_service", "--port", str(port), "--data-dir",
                             str(data_dir), "--comfy", f"http://127.0.0.1:{free_port()}", "--log-level", "error"],
                            cwd=REPO, env=env, preexec_fn=limit, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while health_seconds(port, 2.0) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the service did not start")
        time.sleep(0.2)
    return proc, port


def slow_clients(port: int, count: int, timeout: float) -> dict:
    held, failed = [], 0
    start = time.monotonic()
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
            held.append(s)
        except OSError:
            failed += 1
    opened = time.monotonic() - start
    time.sleep(1.0)
    took = health_seconds(port, timeout)
    states = {"open": 0, "answered_and_closed": 0, "closed": 0}
    for s in held:  # what the service did with them: still open, refused with an answer, or closed
        s.setblocking(False)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    states["answered_and_closed" if got else "closed"] += 1
                    break
                got += chunk
        except BlockingIOError:
            states["open"] += 1
        except OSError:
            states["closed"] += 1
    for s in held:
        s.close()
    return {"connections": count, "connect_failed": failed, "open_seconds": round(opened, 2),
            "health_seconds": None if took is None else round(took, 3), "health_timeout": timeout,
            "slow_connections_at_the_end": states}


def post(port: int, body: bytes, results: list, index: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v3/wavespeed-ai/framepack", data=body,
                                     method="POST", headers={"Authorization": f"Bearer {KEY}",
                                                             "Content-Type": "application/json"})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except urllib.error.URLError as err:  # e.g. the connection closed while the body was still being sent
        status = type(err.reason).__name__
    except OSError as err:
        status = type(err).__name__
    results[index] = (status, round(time.monotonic() - start, 2))


def json_bodies(port: int, pid: int, megabytes: float, copies: int) -> dict:
    count = int(megabytes * 1e6) // 2
    body = b"[" + b"0," * (count - 1) + b"0]"
    before = rss_kb(pid, "VmRSS")
    reset_peak(pid)
    results: list = [None] * copies
    threads = [threading.Thread(target=post, args=(port, body, results, i)) for i in range(copies)]
    worst, probes = 0.0, 0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        took = health_seconds(port, 120.0)
        worst = max(worst, took if took is not None else 120.0)
        probes += 1
        time.sleep(0.05)
    for t in threads:
        t.join()
    peak = rss_kb(pid, "VmHWM")
    return {"body_bytes": len(body), "copies": copies, "answers": [r[0] for r in results],
            "post_seconds": [r[1] for r in results], "health_worst_seconds": round(worst, 3),
            "health_probes": probes, "rss_before_mb": round(before / 1024, 1),
            "peak_growth_mb": round((peak - before) / 1024, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slow", type=int, default=1100, help="half-open connections (0: skip)")
    p.add_argument("--slow-timeout", type=float, default=30.0, help="seconds /health may take before it counts as "
                                                                     "not answering")
    p.add_argument("--json-mb", type=float, nargs="*", default=[47.0], help="JSON array sizes in MB")
    p.add_argument("--nofile", type=int, default=1024, help="the service's soft open-files limit")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    report = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "nofile": args.nofile}
    with tempfile.TemporaryDirectory() as tmp:
        if args.slow:
            proc, port = start_service(Path(tmp) / "slow", args.nofile)
            try:
                report["idle_health_seconds"] = health_seconds(port, 10.0)
                report["slow"] = slow_clients(port, args.slow, args.slow_timeout)
            finally:
                proc.kill()
                proc.wait()
        for size in args.json_mb:
            proc, port = start_service(Path(tmp) / f"json{size:g}", args.nofile)
            try:
                report[f"json_{size:g}MB_one"] = json_bodies(port, proc.pid, size, 1)
                report[f"json_{size:g}MB_four"] = json_bodies(port, proc.pid, size, 4)
            finally:
                proc.kill()
                proc.wait()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
