"""Moves the service's jobs along: sends waiting jobs to servers, follows them there, fetches their videos, and
sends a job again (same seed, so the same video) when its server dies, restarts or forgets it.

One thread ticks every ``poll_interval`` seconds (and at once when woken by a submit or a cancel): it probes the
servers, asks each server where our jobs on it stand, and picks servers for waiting jobs. The slow work (image
uploads, video downloads) runs in a small thread pool, one piece of work per job at a time.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from framepack_client.hosted import HostedParams
from framepack_client.job_states import CANCELLED, COMPLETED, DISPATCHED, FAILED, LOST, QUEUED, RUNNING

from . import backend
from .servers import ServerPool, describe_missing
from .store import JobRecord, JobStore

log = logging.getLogger("framepack.service")
INPUT_GRACE_S = 3600.0


@dataclass(frozen=True)
class SchedulerSettings:
    poll_interval: float = 0.5
    jobs_per_server: int = 2  # our jobs on one server at once (one running, one ready to start)
    max_attempts: int = 3  # sends of one job before it fails
    job_timeout: float = 4 * 3600.0  # seconds from a send to the end of the job
    request_timeout: float = 30.0  # one HTTP request to a server
    download_timeout: float = 600.0
    sweep_interval: float = 60.0  # seconds between looks for finished jobs past their retention


class Scheduler:
    def __init__(self, store: JobStore, pool: ServerPool, outputs_dir: Path, settings: SchedulerSettings,
                 inputs_dir: Path | None = None, retention_s: float | None = None):
        self.store, self.pool, self.outputs_dir, self.settings = store, pool, Path(outputs_dir), settings
        self.inputs_dir, self.retention_s = (Path(inputs_dir) if inputs_dir else None), retention_s
        self._swept_at = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy: set[str] = set()  # job ids with an upload or download in flight
        self._busy_lock = threading.Lock()
        self._workers = ThreadPoolExecutor(max_workers=max(4, 2 * len(pool.servers)),
                                           thread_name_prefix="framepack-service")
        self._thread: threading.Thread | None = None
        self.ticks = 0

    # -- life cycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="framepack-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._workers.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug in one tick must not stop the service from following its jobs
                log.exception("scheduler tick failed")
            self._wake.wait(self.settings.poll_interval)
            self._wake.clear()

    # -- one round

    def tick(self) -> None:
        self.pool.probe_all()
        for job in self.store.active():
            if job.status != QUEUED and not self._is_busy(job.id):
                self._follow(job)
        self._assign()
        if self.retention_s is not None and time.monotonic() - self._swept_at >= self.settings.sweep_interval:
            self._swept_at = time.monotonic()
            self.sweep(time.time() - self.retention_s)
        self.ticks += 1

    def sweep(self, finished_before: float) -> int:
        """Deletes the jobs that finished before ``finished_before`` (a time.time()), their videos, and the stored
        inputs no remaining job names; returns how many jobs went."""
        gone = self.store.delete_finished(finished_before)
        for job in gone:
            shutil.rmtree(self.outputs_dir / job.id, ignore_errors=True)
        if gone and self.inputs_dir is not None and self.inputs_dir.is_dir():
            kept = self.store.input_files()
            for path in self.inputs_dir.iterdir():
                # an input younger than the sweep may belong to a submit not yet stored: left to the next sweep
                if path.is_file() and str(path) not in kept and time.time() - path.stat().st_mtime > INPUT_GRACE_S:
                    path.unlink(missing_ok=True)
        if gone:
            log.info("deleted %d finished jobs past their retention", len(gone))
        return len(gone)

    def _is_busy(self, job_id: str) -> bool:
        with self._busy_lock:
            return job_id in self._busy

    def _run_busy(self, job: JobRecord, work) -> None:
        with self._busy_lock:
            if job.id in self._busy:
                return
            self._busy.add(job.id)

        def wrapped():
            try:
                work(job)
            except Exception:
                log.exception("job %s: background work failed", job.id)
            finally:
                with self._busy_lock:
                    self._busy.discard(job.id)
                self.wake()

        self._workers.submit(wrapped)

    # -- following jobs on servers

    def _follow(self, job: JobRecord) -> None:
        s = self.settings
        if job.cancel_requested:
            if job.server and job.prompt_id:
                backend.stop(job.server, job.prompt_id, s.request_timeout)
            self._finish(job, CANCELLED, "cancelled on request")
            return
        if job.dispatched_at is not None and time.time() - job.dispatched_at > s.job_timeout:
            if job.server and job.prompt_id:
                backend.stop(job.server, job.prompt_id, s.request_timeout)
            self._finish(job, FAILED, f"the job did not finish within {s.job_timeout:g} s on {job.server}")
            return
        if self.pool.is_dead(job.server):
            self._requeue(job, f"the server {job.server} stopped answering")
            return
        if not self.pool.by_url[job.server].answering:
            return  # a short outage: wait for the grace period before giving the job to another server
        try:
            result = backend.outcome(job.server, job.prompt_id, job.graph or {}, job.params, s.request_timeout)
        except backend.ServerDown:
            return  # the next probe records the outage
        if result.state == LOST:
            self._requeue(job, f"the server {job.server} no longer knows the job (it was restarted)")
        elif result.state == RUNNING and job.status != RUNNING:
            job.status, job.started_at = RUNNING, job.started_at or time.time()
            self.store.save(job)
        elif result.state == COMPLETED:
            job.status = RUNNING  # until the videos are here
            job.seed = result.seed if result.seed is not None else job.seed
            job.inference_ms, job.nsfw, job.nsfw_score = result.inference_ms, result.nsfw, result.nsfw_score
            self.store.save(job)
            self._run_busy(job, lambda j: self._download(j, result.videos))
        elif result.state == FAILED:
            if result.interrupted and job.cancel_requested:
                self._finish(job, CANCELLED, "cancelled on request")
            else:
                self._finish(job, FAILED, result.error or "the job failed on the server")

    def _download(self, job: JobRecord, videos: list[dict]) -> None:
        folder = self.outputs_dir / job.id
        folder.mkdir(parents=True, exist_ok=True)
        outputs = []
        for ref in videos:
            token = secrets.token_urlsafe(24)  # the output's URL: unguessable, made here, never from input
            path = folder / f"{token}.mp4"
            try:  # streamed to the file (through a .part replaced when complete), never whole in memory
                size = backend.save_video(job.server, ref, path, self.settings.download_timeout)
            except backend.ServerDown:
                return  # followed again next tick: the server's history still has the job, or it is lost
            outputs.append({"token": token, "file": f"{job.id}/{path.name}", "size": size,
                            "content_type": "video/mp4"})
        fresh = self.store.get(job.id)
        if fresh is None or fresh.final:
            return
        fresh.outputs, fresh.seed = outputs, job.seed
        fresh.inference_ms, fresh.nsfw, fresh.nsfw_score = job.inference_ms, job.nsfw, job.nsfw_score
        self._finish(fresh, COMPLETED, "")

    def _finish(self, job: JobRecord, status: str, error: str) -> None:
        job.status, job.error, job.finished_at = status, error, time.time()
        self.store.save(job)
        log.info("job %s %s%s", job.id, status, f": {error}" if error else "")

    def _requeue(self, job: JobRecord, reason: str) -> None:
        """Back to the queue (it keeps its place: the queue is in submission order), or failed after the last try."""
        job.notes.append(f"attempt {job.attempts} on {job.server}: {reason}")
        if job.attempts >= self.settings.max_attempts:
            self._finish(job, FAILED, f"{reason}; the job was sent {job.attempts} times "
                                      f"({', '.join(job.tried)}) and is given up")
            return
        log.warning("job %s: %s; sending it again", job.id, reason)
        job.status, job.server, job.prompt_id, job.graph = QUEUED, None, None, None
        job.dispatched_at = job.started_at = None
        self.store.save(job)

    # -- sending waiting jobs

    def _assign(self) -> None:
        jobs = self.store.active()
        ours: dict[str, set] = {}  # server -> our prompt ids there
        for job in jobs:
            if job.status in (DISPATCHED, RUNNING) and job.server:
                ours.setdefault(job.server, set()).add(job.prompt_id)
        for job in jobs:
            if job.status != QUEUED or self._is_busy(job.id):
                continue
            if job.cancel_requested:
                self._finish(job, CANCELLED, "cancelled on request")
                continue
            missing = self.pool.missing_files(backend.needed_files(
                job.workflow, job.model_file or None, bool(job.params.get("enable_safety_checker"))))
            if missing:
                self._finish(job, FAILED, describe_missing(missing))
                continue
            server = self.pool.choose(job.model_file, ours, self.settings.jobs_per_server, job.tried)
            if server is None:
                continue  # every fitting server is full or down: the job waits its turn
            job.status, job.server, job.prompt_id = DISPATCHED, server.url, uuid.uuid4().hex
            ours.setdefault(server.url, set()).add(job.prompt_id)
            job.attempts += 1
            job.tried.append(server.url)
            job.dispatched_at = time.time()
            self.store.save(job)  # before the send: a restarted service then finds it there (or lost, and resends)
            self._run_busy(job, self._dispatch)

    def _dispatch(self, job: JobRecord) -> None:
        params = HostedParams.from_record({**job.params, "seed": job.seed})  # validated at intake
        try:
            job.graph = backend.submit(job.server, params, job.workflow, job.model_file or None, job.prompt_id,
                                       self.settings.request_timeout)
        except (backend.Rejected, backend.ServerDown) as err:
            fresh = self.store.get(job.id)
            if fresh is None or fresh.final:
                return
            if isinstance(err, backend.Rejected):
                self._finish(fresh, FAILED, str(err))
            else:
                self._requeue(fresh, f"the server {job.server} did not take the job ({err})")
            return
        fresh = self.store.get(job.id)
        if fresh is not None and not fresh.final:
            fresh.graph = job.graph
            self.store.save(fresh)
