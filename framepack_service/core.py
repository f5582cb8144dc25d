"""The service without its HTTP layer: configuration, the job store, the server pool and the scheduler, and the
few operations the routes need (submit, look up, cancel, find an output)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from framepack_core.limits import (SERVICE_BODY_SECONDS, SERVICE_FETCH_WORKERS, SERVICE_HEADER_SECONDS,
                                   SERVICE_KEEP_ALIVE_SECONDS, SERVICE_MAX_BODY_BYTES, SERVICE_MAX_CLIENT_CONNECTIONS,
                                   SERVICE_MAX_CONNECTIONS, SERVICE_MAX_IMAGE_BYTES, SERVICE_MAX_QUEUED,
                                   SERVICE_RETENTION_HOURS, SERVICE_RETRY_AFTER_SECONDS, SERVICE_URL_SECONDS)

from framepack_client.fetch import Resolver, UrlPolicy, system_resolver
from framepack_client.job_states import CANCELLED, FINAL, QUEUED

from .body import parse_json
from .intake import SAFETY_MODES, SAFETY_REQUEST, Contract, IntakeSettings, intake
from .scheduler import Scheduler, SchedulerSettings
from .servers import ServerPool
from .store import JobRecord, JobStore

DB_NAME = "jobs.sqlite3"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ServiceConfig:
    comfy_urls: list[str]
    data_dir: Path
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # base of the URLs in responses; default: the address the client used
    allow_private_urls: bool = False
    allowed_networks: list[str] = field(default_factory=list)
    url_timeout: float = SERVICE_URL_SECONDS
    max_image_bytes: int = SERVICE_MAX_IMAGE_BYTES
    max_body_bytes: int = SERVICE_MAX_BODY_BYTES
    workflow_dir: Path | None = None
    model_file: str | None = None
    server_grace: float = 15.0
    safety_checker: str = SAFETY_REQUEST  # off | request | always (intake.SAFETY_MODES)
    max_queued: int = SERVICE_MAX_QUEUED  # unfinished jobs at once; more are refused with 429
    retention_hours: float = SERVICE_RETENTION_HOURS  # finished jobs, their inputs and videos are then deleted
    output_url_hours: float | None = None  # an output URL works this long after the job finished (None: retention)
    header_seconds: float = SERVICE_HEADER_SECONDS
    body_seconds: float = SERVICE_BODY_SECONDS
    keep_alive_seconds: int = SERVICE_KEEP_ALIVE_SECONDS
    max_connections: int = SERVICE_MAX_CONNECTIONS
    max_client_connections: int = SERVICE_MAX_CLIENT_CONNECTIONS  # 0: no cap per client (behind a proxy)
    fetch_workers: int = SERVICE_FETCH_WORKERS
    docs: bool = True  # /docs (Swagger UI served from the swagger-ui-bundle package, never a CDN)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    resolver: Resolver = system_resolver

    def url_policy(self) -> UrlPolicy:
        return UrlPolicy(allow_private=self.allow_private_urls,
                         allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks),
                         timeout=self.url_timeout, max_bytes=self.max_image_bytes)


class QueueFull(Exception):
    """More unfinished jobs than --max-queued: the caller should try again later (429 with Retry-After)."""

    def __init__(self, limit: int):
        self.limit, self.retry_after = limit, SERVICE_RETRY_AFTER_SECONDS
        super().__init__(f"the service has {limit} unfinished jobs, its limit; try again in "
                         f"{SERVICE_RETRY_AFTER_SECONDS} s")


class Service:
    def __init__(self, config: ServiceConfig):
        self.config = config
        data = Path(config.data_dir).expanduser()
        self.outputs_dir = data / "outputs"
        self.store = JobStore(data / DB_NAME)
        self.pool = ServerPool(config.comfy_urls, grace_s=config.server_grace,
                               timeout=min(10.0, config.scheduler.request_timeout))
        self.inputs_dir = data / "inputs"
        self.scheduler = Scheduler(self.store, self.pool, self.outputs_dir, config.scheduler,
                                   inputs_dir=self.inputs_dir, retention_s=config.retention_hours * 3600.0)
        if config.safety_checker not in SAFETY_MODES:
            raise ValueError(f"safety_checker must be one of {', '.join(SAFETY_MODES)}")
        self.intake_settings = IntakeSettings(inputs_dir=self.inputs_dir, policy=config.url_policy(),
                                              workflow_dir=config.workflow_dir, model_file=config.model_file,
                                              resolver=config.resolver, safety_checker=config.safety_checker,
                                              pool=self.pool)
        # image downloads run here, never in the threads that answer status lookups and results
        self.fetches = ThreadPoolExecutor(max_workers=max(1, config.fetch_workers),
                                          thread_name_prefix="framepack-fetch")
        self._add_lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.scheduler.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.scheduler.stop()
            self._started = False
        self.fetches.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def submit_raw(self, contract: Contract, raw: bytes) -> JobRecord:
        """:meth:`submit` for a raw body, from the event loop: the JSON is parsed in a worker thread and the images
        are fetched in the service's own download threads, so neither holds up the loop or other requests."""
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, parse_json, raw)
        return await loop.run_in_executor(self.fetches, self.submit, contract, body)

    def submit(self, contract: Contract, body: object) -> JobRecord:
        """Validates, fetches the images, stores the job and wakes the scheduler; BadRequest when invalid,
        QueueFull when --max-queued jobs are unfinished (checked before the fetch and again when storing)."""
        self._check_room()
        job = intake(contract, body, self.intake_settings)
        with self._add_lock:
            self._check_room()
            job = self.store.add(job)
        self.scheduler.wake()
        return job

    def _check_room(self) -> None:
        if self.store.count_active() >= self.config.max_queued:
            raise QueueFull(self.config.max_queued)

    def job(self, job_id: str, contract_kind: str) -> JobRecord | None:
        """The job with this id made through this contract, or None."""
        if not JOB_ID_RE.match(job_id or ""):
            return None
        job = self.store.get(job_id)
        return job if job is not None and job.contract == contract_kind else None

    def queue_position(self, job: JobRecord) -> int:
        return self.store.queue_position(job)

    def cancel(self, job: JobRecord) -> bool:
        """False when the job has already finished. A waiting job is cancelled at once, a sent one by the scheduler
        (removed from its server's queue or interrupted)."""
        if job.status in FINAL:
            return False
        self.store.request_cancel(job.id)
        self.scheduler.wake()
        return True

    def output(self, token: str) -> tuple[JobRecord, dict, Path] | None:
        """(job, output entry, file) for an output token, or None. The file path is made from the stored entry,
        never from the request, and must lie inside the outputs folder."""
        if not TOKEN_RE.match(token or ""):
            return None
        found = self.store.by_output_token(token)
        if found is None:
            return None
        job, output = found
        hours = self.config.output_url_hours
        hours = self.config.retention_hours if hours is None else hours
        if job.finished_at is not None and time.time() > job.finished_at + hours * 3600.0:
            return None  # expired (the retention sweep deletes the file later)
        path = (self.outputs_dir / output["file"]).resolve()
        if self.outputs_dir.resolve() not in path.parents or not path.is_file():
            return None
        return job, output, path

    def describe(self, job: JobRecord) -> dict:
        """Service-side details of a job (server, attempts, notes) for operators."""
        return {"id": job.id, "contract": job.contract, "endpoint": job.endpoint, "status": job.status,
                "server": job.server, "prompt_id": job.prompt_id, "attempts": job.attempts, "tried": job.tried,
                "notes": job.notes, "seed": job.seed, "error": job.error, "queue_position": self.queue_position(job),
                "cancel_requested": job.cancel_requested, "waiting": job.status == QUEUED,
                "cancelled": job.status == CANCELLED}
