"""The scheduler's decisions against stand-in servers (the backend module replaced by a fake that answers as
ComfyUI would): least-loaded choice, jobs per server, model filtering, a lost job sent again with its seed and
then given up, a refused prompt not retried, cancel, and a new scheduler over the same store following a job that
still runs. tests/comfy/test_service_e2e.py does the same through real servers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from framepack_client.job_states import COMPLETED, FAILED, LOST, QUEUED, RUNNING
from framepack_client.outcome import Outcome
from framepack_client.workflow import API_WORKFLOWS_DIR
from framepack_service import backend
from framepack_service.scheduler import Scheduler, SchedulerSettings
from framepack_service.servers import ServerPool
from framepack_service.store import JobRecord, JobStore

MODEL = "FramePackI2V_HY_bf16.safetensors"


class FakeServers:
    """Per URL: up or down, the models it lists, and the prompts it holds (prompt id -> state)."""

    def __init__(self, urls, models=None):
        self.up = {u: True for u in urls}
        self.models = {u: set(models.get(u, {MODEL})) if models else {MODEL} for u in urls}
        self.prompts: dict[str, dict[str, str]] = {u: {} for u in urls}
        self.submitted: list[tuple[str, int]] = []  # (url, seed)
        self.stopped: list[str] = []
        self.reject: str | None = None
        self.files: dict[str, dict] = {}  # url -> backend.other_files' answer (default: lists nothing)

    def _check(self, url):
        if not self.up[url]:
            raise backend.ServerDown(f"{url} refused")

    def install(self, monkeypatch):
        def status(url, timeout):
            self._check(url)
            held = self.prompts[url]
            running = {p for p, s in held.items() if s == "running"}
            waiting = {p for p, s in held.items() if s in ("running", "pending")}
            return backend.ServerStatus(queue_length=len(waiting), prompt_ids=waiting, running=running)

        def model_choices(url, timeout):
            self._check(url)
            return set(self.models[url])

        def submit(url, params, workflow, model_file, prompt_id, timeout):
            self._check(url)
            if self.reject:
                raise backend.Rejected(self.reject)
            self.prompts[url][prompt_id] = "pending"
            self.submitted.append((url, params.seed))
            return {"graph": prompt_id}

        def outcome(url, prompt_id, graph, params, timeout):
            self._check(url)
            state = self.prompts[url].get(prompt_id)
            if state is None:
                return Outcome(LOST)
            if state in ("pending", "running"):
                return Outcome({"pending": QUEUED, "running": RUNNING}[state])
            if state == "interrupted":
                return Outcome(FAILED, error="interrupted", interrupted=True)
            return Outcome(COMPLETED, seed=params["seed"], inference_ms=5,
                           videos=[{"filename": "v.mp4", "subfolder": "", "type": "output"}], nsfw=[False])

        def other_files(url, timeout):
            self._check(url)
            return dict(self.files.get(url, {}))

        def save_video(url, ref, path, timeout):
            self._check(url)
            Path(path).write_bytes(b"mp4 of " + url.encode())
            return Path(path).stat().st_size

        def stop(url, prompt_id, timeout):
            self.stopped.append(prompt_id)
            if prompt_id in self.prompts[url]:
                self.prompts[url][prompt_id] = "interrupted"

        for name, fn in (("status", status), ("model_choices", model_choices), ("submit", submit),
                         ("outcome", outcome), ("save_video", save_video), ("stop", stop),
                         ("other_files", other_files)):
            monkeypatch.setattr(backend, name, fn)


@pytest.fixture
def image(tmp_path) -> str:
    path = tmp_path / "start.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path)
    return str(path)


def make(tmp_path: Path, urls, **settings) -> tuple[Scheduler, JobStore]:
    store = JobStore(tmp_path / "jobs.sqlite3")
    pool = ServerPool(urls, grace_s=settings.pop("grace", 0.0), timeout=1.0)
    scheduler = Scheduler(store, pool, tmp_path / "outputs",
                          SchedulerSettings(**{"jobs_per_server": 2, "max_attempts": 3, **settings}))
    return scheduler, store


def add_job(store: JobStore, image: str, seed: int, model: str = MODEL) -> JobRecord:
    return store.add(JobRecord(id=f"{seed:032x}", contract="fal", endpoint="fal-ai/framepack",
                               params={"image": image, "prompt": "p", "seed": seed}, seed=seed,
                               workflow=str(API_WORKFLOWS_DIR / "framepack_i2v.json"), model_file=model,
                               created_at="2026-01-01T00:00:00.000Z"))


def settle(scheduler: Scheduler) -> None:
    """One tick, then wait for its uploads/downloads to finish."""
    scheduler.tick()
    deadline = time.monotonic() + 30
    while scheduler._busy:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_least_loaded_server_with_the_model_and_a_cap_per_server(tmp_path, image, monkeypatch):
    urls = ["http://a", "http://b", "http://c"]
    fake = FakeServers(urls, models={"http://a": {MODEL}, "http://b": {MODEL}, "http://c": {"other.safetensors"}})
    fake.install(monkeypatch)
    fake.prompts["http://a"]["someone-else"] = "running"  # a is busier
    scheduler, store = make(tmp_path, urls)
    jobs = [add_job(store, image, seed) for seed in range(1, 6)]
    settle(scheduler)
    assert [url for url, _ in fake.submitted] == ["http://b", "http://a", "http://b", "http://a"]
    assert store.get(jobs[4].id).status == "queued" and store.queue_position(store.get(jobs[4].id)) == 0
    for url in ("http://a", "http://b"):
        for pid in list(fake.prompts[url]):
            fake.prompts[url][pid] = "done"
    settle(scheduler)  # finished jobs are downloaded; the waiting one is sent
    settle(scheduler)
    assert [store.get(j.id).status for j in jobs[:4]] == ["completed"] * 4
    assert (tmp_path / "outputs" / jobs[0].id).is_dir()
    assert store.get(jobs[4].id).status == "dispatched"
    missing = add_job(store, image, 99, model="nowhere.safetensors")
    settle(scheduler)
    assert store.get(missing.id).status == "failed" and "nowhere.safetensors" in store.get(missing.id).error


def test_lost_job_is_sent_again_with_its_seed_then_given_up(tmp_path, image, monkeypatch):
    urls = ["http://a", "http://b"]
    fake = FakeServers(urls)
    fake.install(monkeypatch)
    scheduler, store = make(tmp_path, urls, max_attempts=2)
    job = add_job(store, image, 1234)
    settle(scheduler)
    first = store.get(job.id).server
    fake.prompts[first].clear()  # the server restarted: it forgot the job
    settle(scheduler)
    settle(scheduler)
    again = store.get(job.id)
    assert again.attempts == 2 and again.server != first and again.tried == [first, again.server]
    assert [seed for _, seed in fake.submitted] == [1234, 1234]
    assert "no longer knows the job" in again.notes[0]
    fake.up[again.server] = False  # and the second server dies
    settle(scheduler)
    final = store.get(job.id)
    assert final.status == "failed" and "stopped answering" in final.error and "sent 2 times" in final.error


def test_refused_prompt_fails_without_retry_and_cancel_stops_a_sent_job(tmp_path, image, monkeypatch):
    fake = FakeServers(["http://a"])
    fake.install(monkeypatch)
    scheduler, store = make(tmp_path, ["http://a"])
    fake.reject = "num_frames: Value 10 smaller than min of 30 (FramePackSampler node 9)"
    bad = add_job(store, image, 1)
    settle(scheduler)
    assert store.get(bad.id).status == "failed" and "num_frames" in store.get(bad.id).error
    assert store.get(bad.id).attempts == 1
    fake.reject = None
    job = add_job(store, image, 2)
    settle(scheduler)
    sent = store.get(job.id)
    assert sent.status == "dispatched"
    store.request_cancel(job.id)
    settle(scheduler)
    assert store.get(job.id).status == "cancelled" and fake.stopped == [sent.prompt_id]


def test_a_new_scheduler_follows_running_jobs_and_sends_waiting_ones(tmp_path, image, monkeypatch):
    fake = FakeServers(["http://a"])
    fake.install(monkeypatch)
    scheduler, store = make(tmp_path, ["http://a"], jobs_per_server=1)
    running, waiting = add_job(store, image, 1), add_job(store, image, 2)
    settle(scheduler)
    prompt_id = store.get(running.id).prompt_id
    fake.prompts["http://a"][prompt_id] = "running"
    settle(scheduler)
    assert store.get(running.id).status == "running" and store.get(waiting.id).status == "queued"
    store.close()  # "the service stops"; the job goes on on the server
    fake.prompts["http://a"][prompt_id] = "done"
    scheduler2, store2 = make(tmp_path, ["http://a"], jobs_per_server=1)
    settle(scheduler2)
    settle(scheduler2)
    assert store2.get(running.id).status == "completed" and store2.get(running.id).attempts == 1
    assert store2.get(waiting.id).status == "dispatched"
    assert len(fake.submitted) == 2  # the running job was followed, not sent again
