"""``framepack-video serve`` / ``python -m framepack_client serve`` / ``python -m framepack_service``: run the service
(needs the ``service`` extra: ``pip install .[service]``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from .core import Service, ServiceConfig
from .gate import is_loopback
from .intake import SAFETY_MODES
from .scheduler import SchedulerSettings

DEFAULT_DATA_DIR = "~/.cache/framepack-service"
KEY_ENV = "FRAMEPACK_API_KEY"
MIB = 1024 * 1024
# The options' defaults are the configuration's own (and its limits framepack_core.limits'), written once there.
CONFIG = {f.name: f.default for f in fields(ServiceConfig)}
SCHEDULER = SchedulerSettings()

EPILOG = """\
examples:
  framepack-video serve --comfy http://127.0.0.1:8188
  FRAMEPACK_API_KEY=secret framepack-video serve --host 0.0.0.0 --port 8000 \\
      --comfy http://gpu0:8188 --comfy http://gpu1:8188 --comfy http://gpu2:8188

The job store (SQLite), the fetched input images and the finished videos live in --data-dir. Without an API key
the service listens on loopback only and answers only loopback clients. API docs: http://HOST:PORT/docs"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="framepack-video serve", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", metavar="URL", action="append", default=None,
                   help="a ComfyUI server with the FramePack pack (repeat for several; default "
                        "$FRAMEPACK_SERVER or http://127.0.0.1:8188)")
    p.add_argument("--host", default=CONFIG["host"], help=f"address to listen on (default {CONFIG['host']})")
    p.add_argument("--port", type=int, default=CONFIG["port"], help=f"port (default {CONFIG['port']})")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                   help=f"job store (jobs.sqlite3), inputs and outputs (default {DEFAULT_DATA_DIR})")
    p.add_argument("--api-key", default=None, help=f"the key clients must send (default ${KEY_ENV})")
    p.add_argument("--public-url", default=None,
                   help="base of the URLs in responses, e.g. https://video.example.com (default: the address the "
                        "client used)")
    g = p.add_argument_group("input images")
    g.add_argument("--allow-private-urls", action="store_true",
                   help="fetch image URLs that resolve to loopback, private or link-local addresses")
    g.add_argument("--allow-url-network", metavar="CIDR", action="append", default=[],
                   help="fetch image URLs in this network even without --allow-private-urls (repeatable)")
    g.add_argument("--url-timeout", type=float, default=CONFIG["url_timeout"],
                   help=f"seconds for one image download (default {CONFIG['url_timeout']:g})")
    g.add_argument("--max-image-mb", type=float, default=CONFIG["max_image_bytes"] / MIB,
                   help=f"largest image download (default {CONFIG['max_image_bytes'] / MIB:g})")
    g.add_argument("--max-body-mb", type=float, default=CONFIG["max_body_bytes"] / MIB,
                   help=f"largest request body in MiB (default {CONFIG['max_body_bytes'] / MIB:.1f}: two images as "
                        "data: URIs of 8 MiB each and the other fields)")
    g = p.add_argument_group("connections (hostile clients)")
    g.add_argument("--header-seconds", type=float, default=CONFIG["header_seconds"],
                   help=f"a request's head must arrive within this (default {CONFIG['header_seconds']:g})")
    g.add_argument("--body-seconds", type=float, default=CONFIG["body_seconds"],
                   help=f"a request's body must arrive within this (default {CONFIG['body_seconds']:g})")
    g.add_argument("--max-connections", type=int, default=CONFIG["max_connections"],
                   help=f"open connections of all clients (default {CONFIG['max_connections']})")
    g.add_argument("--max-client-connections", type=int, default=CONFIG["max_client_connections"],
                   help=f"open connections of one client address (default {CONFIG['max_client_connections']}; 0: no "
                        "cap, for a service behind a reverse proxy that caps them)")
    g.add_argument("--no-docs", action="store_true", help="do not serve the API docs at /docs")
    g = p.add_argument_group("jobs and servers")
    g.add_argument("--jobs-per-server", type=int, default=SCHEDULER.jobs_per_server,
                   help=f"our jobs on one server at once (default {SCHEDULER.jobs_per_server})")
    g.add_argument("--max-attempts", type=int, default=SCHEDULER.max_attempts,
                   help=f"sends of one job (another server after a failure) before it fails (default "
                        f"{SCHEDULER.max_attempts})")
    g.add_argument("--server-grace", type=float, default=CONFIG["server_grace"],
                   help=f"seconds a server may not answer before its jobs go to another server (default "
                        f"{CONFIG['server_grace']:g})")
    g.add_argument("--poll-interval", type=float, default=SCHEDULER.poll_interval,
                   help="seconds between looks at the servers")
    g.add_argument("--job-timeout", type=float, default=SCHEDULER.job_timeout,
                   help=f"seconds one job may take (default {SCHEDULER.job_timeout / 3600:g} h)")
    g.add_argument("--workflow-dir", default=None,
                   help="folder whose framepack_i2v.json / framepack_first_last_frame.json replace the shipped API "
                        "workflows")
    g.add_argument("--model", default=None, help="model file replacing the workflows' (every server needs it)")
    g.add_argument("--safety-checker", choices=SAFETY_MODES, default=CONFIG["safety_checker"],
                   help="off: the checker never runs (a request asking for it is refused); request: the request's "
                        "enable_safety_checker decides, as on the hosted APIs; always: every video is checked, "
                        f"whatever the request says (default {CONFIG['safety_checker']})")
    g.add_argument("--max-queued", type=int, default=CONFIG["max_queued"],
                   help=f"unfinished jobs at once; more are refused with 429 and Retry-After (default "
                        f"{CONFIG['max_queued']})")
    g.add_argument("--retention-hours", type=float, default=CONFIG["retention_hours"],
                   help=f"finished jobs, their input images and videos are deleted this long after they finished "
                        f"(default {CONFIG['retention_hours']:g}, 7 days)")
    g.add_argument("--output-url-hours", type=float, default=None,
                   help="a video's URL opens without the key (it is an unguessable capability) for this long after "
                        "the job finished (default: the retention period)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    key = args.api_key or os.environ.get(KEY_ENV) or None
    if key is None and not is_loopback(args.host):
        raise SystemExit(f"error: --host {args.host} would serve other machines without an API key; set "
                         f"--api-key or {KEY_ENV}, or keep the default --host 127.0.0.1")
    for value, name in ((args.max_attempts, "--max-attempts"), (args.jobs_per_server, "--jobs-per-server"),
                        (args.max_queued, "--max-queued"), (args.max_connections, "--max-connections")):
        if value < 1:
            raise SystemExit(f"error: {name} must be at least 1")
    for value, name in ((args.retention_hours, "--retention-hours"), (args.header_seconds, "--header-seconds"),
                        (args.body_seconds, "--body-seconds"), (args.output_url_hours or 1, "--output-url-hours")):
        if not value > 0:
            raise SystemExit(f"error: {name} must be more than 0")
    if args.max_client_connections < 0:
        raise SystemExit("error: --max-client-connections must be 0 (no cap) or more")
    urls = args.comfy or [os.environ.get("FRAMEPACK_SERVER", "http://127.0.0.1:8188")]
    try:
        for cidr in args.allow_url_network:
            ipaddress.ip_network(cidr, strict=False)
    except ValueError as err:
        raise SystemExit(f"error: --allow-url-network: {err}") from None
    return ServiceConfig(
        comfy_urls=urls, data_dir=Path(args.data_dir).expanduser(), api_key=key, host=args.host, port=args.port,
        public_url=args.public_url, allow_private_urls=args.allow_private_urls,
        allowed_networks=list(args.allow_url_network), url_timeout=args.url_timeout,
        max_image_bytes=round(args.max_image_mb * MIB), max_body_bytes=round(args.max_body_mb * MIB),
        workflow_dir=Path(args.workflow_dir).expanduser() if args.workflow_dir else None, model_file=args.model,
        server_grace=args.server_grace, safety_checker=args.safety_checker, max_queued=args.max_queued,
        retention_hours=args.retention_hours, output_url_hours=args.output_url_hours,
        header_seconds=args.header_seconds, body_seconds=args.body_seconds, max_connections=args.max_connections,
        max_client_connections=args.max_client_connections, docs=not args.no_docs,
        scheduler=SchedulerSettings(poll_interval=args.poll_interval, jobs_per_server=args.jobs_per_server,
                                    max_attempts=args.max_attempts, job_timeout=args.job_timeout))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .app import create_app  # FastAPI
        from .connections import uvicorn_config  # uvicorn
    except ImportError as err:
        print(f"error: the service needs its extra packages ({err.name} is missing): pip install '.[service]' "
              "from the project folder", file=sys.stderr)
        return 2
    config = config_from_args(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(Service(config))
    print(f"FramePack service on http://{config.host}:{config.port} over {', '.join(config.comfy_urls)} "
          f"({'API key required' if config.api_key else 'no API key: loopback only'})", file=sys.stderr, flush=True)
    import uvicorn

    uvicorn.Server(uvicorn_config(app, config, log_level=args.log_level)).run()
    return 0
