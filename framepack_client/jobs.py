"""Jobs: a generation request sent to a ComfyUI server, remembered on disk so another process can follow it.

A :class:`Job` maps our job id to the server URL, the ComfyUI prompt id, the client id whose websocket gets its
events, the creation time and the parameters. :class:`JobStore` keeps one JSON file per job (default
``~/.cache/framepack-client/jobs``). The functions below move a job along:

    job = queue_job(client, store, params, ...)   # upload images, fill the workflow, POST /prompt
    follow(job, store, timeout=..., on_message=...)  # websocket events + history/queue polling until it ends
    fetch_outputs(job, store, output_dir)         # download the MP4(s) once completed

Statuses are the hosted APIs': created (queued), processing (running), completed, failed. A prompt that the
server knows nothing about any more (neither in /history nor in /queue: the server was restarted, its queue and
history live in memory only) is failed with an error that says so, so nothing ever waits for it forever.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from framepack_core.limits import MAX_IMAGE_BYTES, MAX_VIDEO_BYTES

from .errors import ComfyConnectionError, ComfyError, ComfyHTTPError, ComfyTimeout, PromptRejected
from .fetch import FetchError, UrlPolicy, is_image_source, load_source, short
from .hosted import HostedParams, ValidationError
from .images import ImageProblem, check_image
from .media import check_media_bytes
from .server_api import ComfyClient, EventStream, check_server_url
from .terminal import printable
from .workflow import (SAFETY_NODE, WorkflowError, build_prompt, default_model, find_nodes, hosted_name, load_workflow,
                       model_id, workflow_name)

DEFAULT_JOBS_DIR = Path("~/.cache/framepack-client/jobs").expanduser()
CREATED, PROCESSING, COMPLETED, FAILED = "created", "processing", "completed", "failed"
TERMINAL = (COMPLETED, FAILED)
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as new_job makes them
_SEED_TEXT = re.compile(r"^seed: (-?\d+)", re.MULTILINE)
# The user's own image URLs: any address (a server on the user's network is fine), but never a redirect from a
# public server into the local network or from https to http (fetch.py).
CLIENT_URL_POLICY = UrlPolicy(allow_private=True, timeout=60.0, max_bytes=MAX_IMAGE_BYTES,
                              user_agent="framepack-client")
# For parameter files made by someone else (--untrusted-input): only public addresses.
UNTRUSTED_URL_POLICY = UrlPolicy(allow_private=False, timeout=60.0, max_bytes=MAX_IMAGE_BYTES,
                                 user_agent="framepack-client",
                                 allow_hint="an --untrusted-input request may only name public addresses")
VIDEO_FETCH_SECONDS = 600.0  # a video to continue may be hundreds of MB


def video_policy(policy: UrlPolicy) -> UrlPolicy:
    """The same address and redirect rules for a video URL, with the video's byte cap and a longer deadline."""
    return replace(policy, max_bytes=MAX_VIDEO_BYTES, timeout=max(policy.timeout, VIDEO_FETCH_SECONDS),
                   accept="video/*")

MessageHandler = Callable[[dict], None]


class JobError(Exception):
    """A job could not be created, found or followed; the message says why and what to do."""


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
    status: str = CREATED
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
        return self.status in TERMINAL

    def result(self) -> dict[str, Any]:
        """The hosted APIs' prediction object (plus prompt_id and server for people debugging)."""
        get_url = f"{self.server}/history/{self.prompt_id}" if self.prompt_id else ""
        return {
            "id": self.id, "model": self.model, "status": self.status, "outputs": list(self.outputs),
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
        try:
            return Job(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:
            raise JobError(f"{damaged} ({err}); delete it") from err

    def list(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        return [self._read(p) for p in sorted(self.root.glob("*.json")) if JOB_ID.fullmatch(p.stem)]


# -- creating and queueing ---------------------------------------------------------------------------------------

def _read_source(source: str, what: str, policy: UrlPolicy, max_bytes: int, smaller: str) -> tuple[bytes, str]:
    """(bytes, how to name the source in messages) of a local file, an http(s) URL fetched under ``policy`` or a
    data: URI, at most ``max_bytes`` (a local file is measured before it is read); unchecked."""
    if is_image_source(source):  # http(s) or data:
        shown = "the data: URI" if source[:5].lower() == "data:" else short(source)
        try:
            return load_source(source, policy), shown
        except FetchError as err:
            raise JobError(f"could not use {shown}: {err}; check the URL or download the {what} yourself and pass "
                           "the file") from err
    path = Path(source).expanduser()
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise JobError(f"the {what} {source} is {size} bytes; the limit is {max_bytes} bytes: pass {smaller}")
        return path.read_bytes(), source
    except OSError as err:
        raise JobError(f"cannot read the {what} {source}: {err.strerror}") from err


def _read_image(source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> tuple[bytes, str]:
    """(bytes, file suffix) of a local image, an http(s) URL (fetched under ``policy``) or a data: URI, checked to
    be an image within the size limits (from its header, before anything is uploaded)."""
    data, shown = _read_source(source, "image", policy, MAX_IMAGE_BYTES, "a smaller image")
    try:
        kind = check_image(data)
    except ImageProblem as err:
        raise JobError(f"{shown}: {err}") from err
    return data, "." + ("jpg" if kind == "jpeg" else kind)


def upload_image(client: ComfyClient, source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> str:
    """Uploads an image into the server's input folder under a name made from its content (the same image is
    stored once); returns the name for LoadImage.

    Never overwrite: a queued or running job may be reading that very file, and rewriting it truncates it first.
    Without overwrite the server keeps an identical file as it is and gives another name to a different one.
    """
    data, suffix = _read_image(source, policy)
    name = f"framepack_client_{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    return client.upload_image(data, name=name, overwrite=False)


def _read_video(source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> tuple[bytes, str]:
    """(bytes, container) of a local video, an http(s) URL (fetched under :func:`video_policy` of ``policy``: the
    image URLs' address and redirect rules) or a data: URI, checked by its first bytes to be a video."""
    data, shown = _read_source(source, "video", video_policy(policy), MAX_VIDEO_BYTES,
                               "a shorter video (only its end is used as context)")
    problem, kind = check_media_bytes("video", data, shown, "video")
    if problem:
        raise JobError(problem)
    return data, kind


def upload_video(client: ComfyClient, source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> str:
    """Uploads a video to continue like upload_image (same endpoint, content-named, never overwritten); returns
    the name for LoadVideo. Its URL is fetched under the image URLs' rules with the video's byte cap."""
    data, kind = _read_video(source, policy)
    name = f"framepack_client_{hashlib.sha256(data).hexdigest()[:16]}.{kind}"
    try:
        return client.upload_image(data, name=name, overwrite=False)
    except ComfyHTTPError as err:
        if err.status == 413:
            raise JobError(f"the server refused the {len(data) >> 20} MiB video as too large: start ComfyUI with a "
                           "larger --max-upload-size (in MB), or shorten the video (only its end matters)") from err
        raise


def describe_rejection(err: PromptRejected, graph: dict) -> str:
    """The server's validation errors in the hosted parameters' terms where it names an input we filled."""
    lines = []
    for node_id, info in (err.node_errors or {}).items():
        for item in info.get("errors", []):
            input_name = (item.get("extra_info") or {}).get("input_name")
            name = hosted_name(graph, node_id, input_name)
            text = printable(item.get("message", "invalid"))
            if item.get("details"):
                text += f": {printable(item['details'])}"
            where = f"{printable(info.get('class_type', '?'))} node {printable(node_id)}"
            lines.append(f"{name}: {text} ({where})" if name else f"{where}: {text}")
    top = printable((err.error or {}).get("message") or "the server refused the prompt")
    if (err.error or {}).get("type") == "missing_node_type" or "does not exist" in top:
        top += "; is the FramePack node pack installed in this ComfyUI (custom_nodes) and did it import?"
    elif (err.error or {}).get("details") and not lines:
        top += f": {printable(err.error['details'])}"
    return "; ".join([top, *lines]) if lines else top


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
    queueing.

    Returns the job with status created, or failed (rejected prompt, bad workflow, image download error); raises
    :class:`ServerUnreachable` when the server does not answer. ``before_queue`` runs just before POST /prompt
    (``run`` opens its websocket there, so no event is missed). Image and video URLs are fetched under
    ``url_policy`` (a video with its own byte cap: :func:`video_policy`).
    """
    params.validate()
    job = new_job(client.base_url, params, f1=f1, workflow=workflow, model_file=model_file, output_dir=output_dir)
    client = ComfyClient(job.server, client_id=job.client_id, timeout=client.timeout)  # its events reach our ws
    try:
        graph = load_workflow(workflow or job.workflow)
        start_name = upload_image(client, params.image, url_policy) if params.image else None
        video_name = upload_video(client, params.video, url_policy) if params.video else None
        end_name = upload_image(client, params.end_image, url_policy) if params.end_image else None
        prefix = filename_prefix or f"framepack_client/{job.id[:12]}"  # own output name: never another job's file
        if model_file is None and workflow is None:
            model_file = default_model(params, f1)  # the shipped extend/t2v graphs follow --f1
        job.prompt = build_prompt(params, graph, start_image_name=start_name, end_image_name=end_name,
                                  model=model_file, filename_prefix=prefix, video_name=video_name)
    except (WorkflowError, JobError, ValidationError) as err:
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
        return _fail(store, job, describe_rejection(err, job.prompt))
    except (ComfyConnectionError, ComfyTimeout) as err:
        _fail(store, job, str(unreachable(client.base_url, err)))
        raise unreachable(client.base_url, err) from err
    except ComfyHTTPError as err:
        return _fail(store, job, f"the server refused the prompt: {err}")
    store.save(job)
    return job


def _fail(store: JobStore, job: Job, error: str) -> Job:
    job.status, job.error = FAILED, error
    store.save(job)
    return job


# -- finding out where a job is ----------------------------------------------------------------------------------

def _sampler_seed(job: Job, outputs: dict) -> int | None:
    for node_id, _ in find_nodes(job.prompt or {}, "FramePackSampler"):
        ui = outputs.get(node_id) or {}
        for report in ui.get("framepack") or []:
            if isinstance(report, dict) and isinstance(report.get("seed"), int):
                return report["seed"]
        for text in ui.get("text") or []:
            match = _SEED_TEXT.search(str(text))
            if match:
                return int(match.group(1))
    return None


def safety_report(graph: dict, outputs: dict) -> dict | None:
    """The safety checker's report ({enabled, flagged, score, ...}) from a /history entry's outputs, or None."""
    for node_id, _ in find_nodes(graph or {}, SAFETY_NODE):
        for report in (outputs.get(node_id) or {}).get("framepack_safety") or []:
            if isinstance(report, dict) and isinstance(report.get("flagged"), bool):
                return report
    return None


def _video_refs(outputs: dict) -> list[dict]:
    refs = []
    for ui in outputs.values():
        for items in ui.values():
            for ref in items if isinstance(items, list) else []:
                if isinstance(ref, dict) and str(ref.get("filename", "")).lower().endswith(VIDEO_SUFFIXES):
                    refs.append({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
    return refs


def _describe_failure(job: Job, kind: str, data: dict) -> str:
    """One line about how the prompt failed, from server text made printable (control characters escaped)."""
    node = f"{printable(data.get('node_type', '?'))} (node {printable(data.get('node_id', '?'))})"
    if kind == "execution_interrupted":
        return f"interrupted in {node}: the prompt was cancelled on the server (Cancel button or POST /interrupt)"
    message = printable(str(data.get("exception_message", "")).strip(), keep_newlines=True) or "no message"
    # ComfyUI names the class with its module, which for a custom node is a file system path: keep the class name
    kind = printable(str(data.get("exception_type") or "error").rsplit(".", 1)[-1])
    text = f"{node} failed: {kind}: {message}"
    node_id = str(data.get("node_id"))
    name = hosted_name(job.prompt or {}, node_id, "image") if data.get("node_type") == "LoadImage" else None
    if name:  # core LoadImage knows nothing of our parameters: say which of the user's files it was
        text += (f" - the {name} {job.params.get(name)!r} could not be decoded by the server; open it in an image "
                 "editor and save it again as PNG or JPEG")
    return text


def apply_history(job: Job, entry: dict) -> Job:
    """Sets the job's final status, error, seed, timings and remote outputs from its /history entry."""
    status_info = entry.get("status") or {}
    messages = [(m[0], m[1] if isinstance(m[1], dict) else {}) for m in status_info.get("messages") or []]
    stamps = {kind: data.get("timestamp") for kind, data in messages}
    end = next(((k, d) for k, d in messages if k in ("execution_error", "execution_interrupted")), None)
    outputs = entry.get("outputs") or {}
    if end is not None:
        job.status, job.error = FAILED, _describe_failure(job, *end)
    elif status_info.get("status_str") not in (None, "success"):
        job.status, job.error = FAILED, f"the server reports status {status_info.get('status_str')!r}"
    else:
        job.remote_outputs = _video_refs(outputs)
        if job.remote_outputs:
            job.status, job.error = COMPLETED, ""
        else:
            job.status = FAILED
            job.error = "the prompt finished without a video output; the workflow needs a FramePackVideoCombine node"
    report = safety_report(job.prompt, outputs)
    flagged = bool(report and report.get("enabled") and report["flagged"])
    job.has_nsfw_contents = [flagged] * len(job.remote_outputs)
    job.nsfw_score = float(report["score"]) if report and report.get("enabled") else None
    seed = _sampler_seed(job, outputs)
    if seed is None and job.status == COMPLETED and isinstance(job.params.get("seed"), int) \
            and job.params["seed"] != -1:
        seed = job.params["seed"]  # a cached sampler reports nothing; a fixed seed is the seed used
    job.seed = seed
    start = stamps.get("execution_start")
    finish = next((stamps.get(k) for k in ("execution_success", "execution_error", "execution_interrupted")
                   if stamps.get(k) is not None), None)
    if isinstance(start, (int, float)) and isinstance(finish, (int, float)):
        job.inference_ms = int(round(finish - start))
    return job


def lost_error(job: Job) -> str:
    return (f"the server at {job.server} knows nothing about prompt {job.prompt_id}: it is neither in its history "
            "nor in its queue. The server was probably restarted after the job was submitted (ComfyUI keeps its "
            "queue and history in memory only); submit the job again")


def check(client: ComfyClient, job: Job) -> Job:
    """Updates a non-final job from the server: history (finished), queue (processing / created) or lost.
    Raises :class:`ServerUnreachable` when the server does not answer."""
    if job.finished or job.prompt_id is None:
        return job
    try:
        entry = client.history(job.prompt_id).get(job.prompt_id)
        if entry is None:
            queue = client.queue()
            running = {item[1] for item in queue.get("queue_running", []) if len(item) > 1}
            pending = {item[1] for item in queue.get("queue_pending", []) if len(item) > 1}
            if job.prompt_id in running:
                job.status = PROCESSING
                return job
            if job.prompt_id in pending:
                job.status = CREATED
                return job
            # it may have finished between the two requests: the history is written before it leaves the queue
            entry = client.history(job.prompt_id).get(job.prompt_id)
    except (ComfyConnectionError, ComfyTimeout) as err:
        raise unreachable(job.server, err) from err
    except ComfyHTTPError as err:
        raise JobError(f"the server at {job.server} answered with an error: {err}") from err
    if entry is None:
        job.status, job.error = FAILED, lost_error(job)
        return job
    return apply_history(job, entry)


def _is_end_event(message: dict, prompt_id: str) -> bool:
    data = message.get("data") or {}
    if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
        return False
    kind = message.get("type")
    return kind in ("execution_success", "execution_error", "execution_interrupted") or \
        (kind == "executing" and data.get("node") is None)


def follow(job: Job, store: JobStore, *, timeout: float | None = None, on_message: MessageHandler | None = None,
           events: EventStream | None = None, poll_interval: float = 1.0) -> Job:
    """Follows a job until it is completed or failed, or ``timeout`` seconds passed (it is then still created or
    processing). Websocket events (opened with the job's client id unless ``events`` is given) go to
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
