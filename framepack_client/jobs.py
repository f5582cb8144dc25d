"""Jobs: a generation request sent to a ComfyUI server, remembered on disk so another process can follow it.

A :class:`Job` maps our job id to the server URL, the ComfyUI prompt id, the client id whose websocket gets its
events, the creation time and the parameters. :class:`JobStore` keeps one JSON file per job (default
``~/.cache/framepack-client/jobs``). The functions below move a job along:

    job = queue_job(client, store, params, ...)   # upload images (uploads.py), fill the workflow, POST /prompt
    follow(job, store, timeout=..., on_message=...)  # websocket events + history/queue polling until it ends
    fetch_outputs(job, store, output_dir)         # download the MP4(s) once completed

States are framepack_client.job_states' (queued, running, completed, failed); a job's result object says them in
the hosted APIs' words (created, processing, completed, failed). A prompt that the server knows nothing about any
more (neither in /history nor in /queue: the server was restarted, its queue and history live in memory only) is
failed with an error that says so, so nothing ever waits for it forever.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .errors import ComfyConnectionError, ComfyError, ComfyHTTPError, ComfyTimeout, JobError, PromptRejected
from .fetch import UrlPolicy
from .hosted import HostedParams
from .job_states import COMPLETED, FAILED, FINAL, LOST, QUEUED, RUNNING, WAVESPEED_STATUS
from .model_files import missing_models, model_folder_paths
from .outcome import END_EVENTS, VIDEO_SUFFIXES, Outcome, describe_rejection, locate
from .server_api import ComfyClient, EventStream, check_server_url
from .terminal import printable
from .uploads import CLIENT_URL_POLICY, upload_image, upload_video
from .workflow import WorkflowError, build_prompt, default_model, load_workflow, model_id, workflow_name

DEFAULT_JOBS_DIR = Path("~/.cache/framepack-client/jobs").expanduser()
JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as new_job makes them
CLIENT_STATES = (QUEUED, RUNNING, COMPLETED, FAILED)  # a client's job waits, runs and ends on its server
# Job files of earlier versions name the states in WaveSpeed's words.
EARLIER_STATE_NAMES = {"created": QUEUED, "processing": RUNNING}

MessageHandler = Callable[[dict], None]
# The videos' prefix in the server's output folder. The same for every job: the prompt is written into the MP4
# (ComfyUI's "prompt" tag), so a per-job name there would make two runs of one seed differ in their bytes. Each
# video still gets a file of its own (the node counts up and never overwrites), and a job finds its video in its
# prompt's history, not by name.
OUTPUT_PREFIX = "framepack_client/video"


class ServerUnreachable(JobError):
    """The ComfyUI server did not answer."""


def now_iso() -> str:
    """UTC time like the hosted APIs' created_at: 2023-04-01T12:34:56.789Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unreachable(server: str, err: Exception) -> ServerUnreachable:
    return ServerUnreachable(f"cannot reach the ComfyUI server at {server} ({err}); is it running? Start ComfyUI "
                             "or pass --server with its address (e.g. http://127.0.0.1:8188)")


@dataclass
class Job:
    id: str
    server: str
    client_id: str
    created_at: str
    params: dict
    model: str  # hosted-style model id, e.g. framepack/i2v
    workflow: str  # shipped workflow name or the path given with --workflow
    prompt_id: str | None = None
    prompt: dict | None = None  # the filled API prompt that was queued
    model_file: str | None = None  # --model override, if any
    output_dir: str | None = None  # where result downloads the videos unless told otherwise
    status: str = QUEUED  # framepack_client.job_states
    error: str = ""
    seed: int | None = None
    inference_ms: int | None = None
    remote_outputs: list[dict] = field(default_factory=list)  # {filename, subfolder, type} for /view
    outputs: list[str] = field(default_factory=list)  # downloaded local files
    has_nsfw_contents: list[bool] = field(default_factory=list)  # per video output: flagged by the safety checker
    nsfw_score: float | None = None  # the checker's top score, when it ran
    progress_events: int = 0  # progress messages seen by the process that followed the job (not persisted meaning)

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def result(self) -> dict[str, Any]:
        """The hosted APIs' prediction object (plus prompt_id and server for people debugging)."""
        get_url = f"{self.server}/history/{self.prompt_id}" if self.prompt_id else ""
        return {
            "id": self.id, "model": self.model, "status": WAVESPEED_STATUS[self.status], "outputs": list(self.outputs),
            "seed": self.seed, "error": self.error, "created_at": self.created_at,
            "has_nsfw_contents": list(self.has_nsfw_contents),
            "timings": {"inference": self.inference_ms}, "urls": {"get": get_url},
            "prompt_id": self.prompt_id, "server": self.server,
        }


class JobStore:
    """One JSON file per job in ``root``; writes are atomic (a reader never sees half a file). A job's id is a
    32-digit hex uuid and its file is named after it; a file whose content names another id is refused, because
    the id is used in file names."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root else DEFAULT_JOBS_DIR

    def path(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id or ""):
            raise JobError(f"{printable(job_id)!r} is not a job id (32 hex digits, as submit/run print it)")
        return self.root / f"{job_id}.json"

    def save(self, job: Job) -> Path:
        path = self.path(job.id)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{job.id}.", suffix=".tmp", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(job), f, indent=1)
        os.replace(tmp, path)
        return path

    def load(self, job_id: str) -> Job:
        """The job with this id, or the only one whose id starts with it (at least 4 characters)."""
        if not re.fullmatch(r"[0-9a-f]{4,32}", job_id or ""):
            raise JobError(f"{printable(job_id)!r} is not a job id (the 'id' printed by submit/run)")
        path = self.root / f"{job_id}.json"
        if not path.is_file():
            matches = sorted(self.root.glob(f"{job_id}*.json")) if self.root.is_dir() else []
            if len(matches) > 1:
                raise JobError(f"job id prefix {job_id!r} matches {len(matches)} jobs; give more characters")
            if not matches:
                raise JobError(f"no job {job_id!r} in {self.root}; check the id, or pass the --jobs-dir that "
                               "submit used")
            path = matches[0]
        return self._read(path)

    def _read(self, path: Path) -> Job:
        damaged = f"{path} is not a job record this client wrote"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise JobError(f"{damaged} ({err}); delete it") from err
        if not isinstance(data, dict):
            raise JobError(f"{damaged}; delete it")
        job_id = data.get("id")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id) or job_id != path.stem:
            raise JobError(f"{damaged}: it names the job {printable(job_id)!r}, not {path.stem!r} (the id is used in "
                           "file names, so a changed one is refused); delete it")
        try:
            check_server_url(str(data.get("server", "")))
        except ValueError as err:
            raise JobError(f"{damaged}: {err}; delete it") from err
        known = Job.__dataclass_fields__
        data["status"] = EARLIER_STATE_NAMES.get(data.get("status"), data.get("status"))
        try:
            job = Job(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:
            raise JobError(f"{damaged} ({err}); delete it") from err
        if job.status not in CLIENT_STATES:
            raise JobError(f"{damaged}: its status {printable(job.status)!r} is not one of {', '.join(CLIENT_STATES)}; "
                           "delete it")
        return job

    def list(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        return [self._read(p) for p in sorted(self.root.glob("*.json")) if JOB_ID.fullmatch(p.stem)]


# -- creating and queueing ---------------------------------------------------------------------------------------

def new_job(server: str, params: HostedParams, *, f1: bool = False, workflow: str | None = None,
            model_file: str | None = None, output_dir: str | None = None) -> Job:
    return Job(id=uuid.uuid4().hex, server=server.rstrip("/"), client_id=uuid.uuid4().hex, created_at=now_iso(),
               params=params.to_dict(), model=model_id(params, f1), workflow=workflow or workflow_name(params, f1),
               model_file=model_file, output_dir=output_dir)


def queue_job(client: ComfyClient, store: JobStore, params: HostedParams, *, f1: bool = False,
              workflow: str | None = None, model_file: str | None = None, filename_prefix: str | None = None,
              output_dir: str | None = None, before_queue: Callable[[Job], None] | None = None,
              url_policy: UrlPolicy = CLIENT_URL_POLICY) -> Job:
    """Uploads the images or the video, fills the workflow and queues it; the job is saved before and after
    queueing. ``params`` come validated (:meth:`HostedParams.from_mapping`) and are not checked again.

    Returns the job with status queued, or failed (rejected prompt, bad workflow, image download error); raises
    :class:`ServerUnreachable` when the server does not answer. ``before_queue`` runs just before POST /prompt
    (``run`` opens its websocket there, so no event is missed). Image and video URLs are fetched under
    ``url_policy`` (a video with its own byte cap: :func:`~framepack_client.uploads.video_policy`).
    """
    job = new_job(client.base_url, params, f1=f1, workflow=workflow, model_file=model_file, output_dir=output_dir)
    client = ComfyClient(job.server, client_id=job.client_id, timeout=client.timeout)  # its events reach our ws
    try:
        graph = load_workflow(workflow or job.workflow)
        start_name = upload_image(client, params.image, url_policy) if params.image else None
        video_name = upload_video(client, params.video, url_policy) if params.video else None
        end_name = upload_image(client, params.end_image, url_policy) if params.end_image else None
        prefix = filename_prefix or OUTPUT_PREFIX
        if model_file is None and workflow is None:
            model_file = default_model(params, f1)  # the shipped extend/t2v graphs follow --f1
        job.prompt = build_prompt(params, graph, start_image_name=start_name, end_image_name=end_name,
                                  model=model_file, filename_prefix=prefix, video_name=video_name)
    except (WorkflowError, JobError) as err:
        return _fail(store, job, str(err))
    except (ComfyConnectionError, ComfyTimeout) as err:
        raise unreachable(client.base_url, err) from err
    except ComfyHTTPError as err:
        return _fail(store, job, f"uploading a file failed: {err}")
    job.prompt_id = job.id
    store.save(job)
    if before_queue is not None:
        before_queue(job)
    try:
        client.queue_prompt(job.prompt, prompt_id=job.prompt_id)
    except PromptRejected as err:
        return _fail(store, job, describe_rejection(err, job.prompt, _model_folders(client, err, job.prompt)))
    except (ComfyConnectionError, ComfyTimeout) as err:
        _fail(store, job, str(unreachable(client.base_url, err)))
        raise unreachable(client.base_url, err) from err
    except ComfyHTTPError as err:
        return _fail(store, job, f"the server refused the prompt: {err}")
    store.save(job)
    return job


def _model_folders(client: ComfyClient, err: PromptRejected, graph: dict) -> dict[str, str]:
    """The server's model directories, asked only when its refusal names missing model files, so the message says
    where they go on that machine; {} when it does not say (the message then names models/<folder>)."""
    if not missing_models(err.node_errors or {}, graph)[0]:
        return {}
    try:
        return model_folder_paths(client.folder_paths())
    except (ComfyError, ValueError):  # an older server without the endpoint, or a reply that is not JSON
        return {}


def _fail(store: JobStore, job: Job, error: str) -> Job:
    job.status, job.error = FAILED, error
    store.save(job)
    return job


# -- finding out where a job is ----------------------------------------------------------------------------------

def lost_error(job: Job) -> str:
    return (f"the server at {job.server} knows nothing about prompt {job.prompt_id}: it is neither in its history "
            "nor in its queue. The server was probably restarted after the job was submitted (ComfyUI keeps its "
            "queue and history in memory only); submit the job again")


def apply_outcome(job: Job, found: Outcome) -> Job:
    """The job moved to where its server says its prompt is; a finished prompt's results are copied in."""
    if found.state == LOST:
        job.status, job.error = FAILED, lost_error(job)
    elif found.state not in (COMPLETED, FAILED):
        job.status = found.state
    else:
        job.status, job.error, job.seed = found.state, found.error, found.seed
        job.remote_outputs, job.has_nsfw_contents, job.nsfw_score = found.videos, found.nsfw, found.nsfw_score
        if found.inference_ms is not None:
            job.inference_ms = found.inference_ms
    return job


def check(client: ComfyClient, job: Job) -> Job:
    """Updates a non-final job from the server: history (finished), queue (running / queued) or lost.
    Raises :class:`ServerUnreachable` when the server does not answer."""
    if job.finished or job.prompt_id is None:
        return job
    try:
        found = locate(client, job.prompt_id, job.prompt, job.params)
    except (ComfyConnectionError, ComfyTimeout) as err:
        raise unreachable(job.server, err) from err
    except ComfyHTTPError as err:
        raise JobError(f"the server at {job.server} answered with an error: {err}") from err
    return apply_outcome(job, found)


def _is_end_event(message: dict, prompt_id: str) -> bool:
    data = message.get("data") or {}
    if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
        return False
    kind = message.get("type")
    return kind in END_EVENTS or \
        (kind == "executing" and data.get("node") is None)


def follow(job: Job, store: JobStore, *, timeout: float | None = None, on_message: MessageHandler | None = None,
           events: EventStream | None = None, poll_interval: float = 1.0) -> Job:
    """Follows a job until it is completed or failed, or ``timeout`` seconds passed (it is then still queued or
    running). Websocket events (opened with the job's client id unless ``events`` is given) go to
    ``on_message``; the server is asked for the job's state every ``poll_interval`` seconds and at once after an
    end event, so a lost prompt or a dead websocket never makes this wait forever. The job is saved when it ends.
    Raises :class:`ServerUnreachable` when the server stops answering."""
    if job.finished:
        return job
    client = ComfyClient(job.server, client_id=job.client_id)
    deadline = None if not timeout else time.monotonic() + timeout
    stream, own_stream = events, events is None
    if stream is None:
        try:
            stream = client.open_events(connect_timeout=10)
        except (ComfyError, OSError):
            stream = None  # polling alone still finds the end
    try:
        next_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:
                check(client, job)
                if job.finished:
                    store.save(job)
                    return job
                next_check = time.monotonic() + poll_interval
            if deadline is not None and now >= deadline:
                return job
            wait = max(0.01, min(next_check, deadline or next_check) - time.monotonic())
            if stream is None:
                time.sleep(wait)
                continue
            try:
                message = stream.next(timeout=wait)
            except (ComfyError, OSError):
                stream.close()
                stream = None
                continue
            if message is None:
                continue
            if message.get("type") == "progress" and (message.get("data") or {}).get("prompt_id") == job.prompt_id:
                job.progress_events += 1
            if on_message is not None:
                on_message(message)
            if _is_end_event(message, job.prompt_id):
                next_check = 0.0
    finally:
        if own_stream and stream is not None:
            stream.close()


# -- outputs -----------------------------------------------------------------------------------------------------

def fetch_outputs(client: ComfyClient, job: Job, store: JobStore, output_dir: str | Path) -> Job:
    """Downloads a completed job's videos to ``output_dir`` as <job id>.mp4 (<job id>_1.mp4 ... for more), each
    streamed to disk under the client's size cap."""
    if job.status != COMPLETED:
        return job
    folder = Path(output_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    store.path(job.id)  # the id names the files: checked like the store checks it
    paths = []
    for i, ref in enumerate(job.remote_outputs):
        suffix = Path(str(ref.get("filename", ""))).suffix.lower()
        suffix = suffix if suffix in VIDEO_SUFFIXES else ".mp4"  # the server's name does not choose the file type
        path = folder / (f"{job.id}{suffix}" if i == 0 else f"{job.id}_{i}{suffix}")
        try:
            client.download(str(ref["filename"]), str(ref.get("subfolder", "")), str(ref.get("type", "output")), path)
        except (ComfyConnectionError, ComfyTimeout) as err:
            raise unreachable(job.server, err) from err
        except ComfyHTTPError as err:
            job.status = FAILED
            job.error = (f"the video {printable(ref['filename'])} could not be downloaded ({err.status}); it may "
                         "have been deleted from the server's output folder")
            store.save(job)
            return job
        paths.append(str(path.resolve()))
    job.outputs = paths
    store.save(job)
    return job
