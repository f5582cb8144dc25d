"""The service without its HTTP layer: configuration, the job store, the server pool and the scheduler, and the
few operations the routes need (submit, look up, cancel, find an output)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from framepack_core.limits import SERVICE_MAX_BODY_BYTES, SERVICE_MAX_IMAGE_BYTES, SERVICE_URL_SECONDS

from framepack_client.fetch import Resolver, UrlPolicy, system_resolver
from framepack_client.job_states import CANCELLED, FINAL, QUEUED

from .intake import Contract, IntakeSettings, intake
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
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    resolver: Resolver = system_resolver

    def url_policy(self) -> UrlPolicy:
        return UrlPolicy(allow_private=self.allow_private_urls,
                         allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks),
                         timeout=self.url_timeout, max_bytes=self.max_image_bytes)


class Service:
    def __init__(self, config: ServiceConfig):
        self.config = config
        data = Path(config.data_dir).expanduser()
        self.outputs_dir = data / "outputs"
        self.store = JobStore(data / DB_NAME)
        self.pool = ServerPool(config.comfy_urls, grace_s=config.server_grace,
                               timeout=min(10.0, config.scheduler.request_timeout))
        self.scheduler = Scheduler(self.store, self.pool, self.outputs_dir, config.scheduler)
        self.intake_settings = IntakeSettings(inputs_dir=data / "inputs", policy=config.url_policy(),
                                              workflow_dir=config.workflow_dir, model_file=config.model_file,
                                              resolver=config.resolver)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.scheduler.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.scheduler.stop()
            self._started = False
        self.store.close()

    def submit(self, contract: Contract, body: object) -> JobRecord:
        """Validates, fetches the images, stores the job and wakes the scheduler; BadRequest when invalid."""
        job = self.store.add(intake(contract, body, self.intake_settings))
        self.scheduler.wake()
        return job

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
