"""What the service asks of one ComfyUI server: is it up and how busy, which models it has, queue a job, where a
job is, its video, stop a job. This module is the only one of the service that talks to the ComfyUI client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from functools import lru_cache

from framepack_client.errors import (ComfyConnectionError, ComfyError, ComfyHTTPError, ComfyTimeout, JobError,
                                    PromptRejected)
from framepack_client.hosted import HostedParams
from framepack_client.outcome import Outcome, describe_rejection, locate, read_queue
from framepack_client.server_api import ComfyClient
from framepack_client.uploads import upload_image
from framepack_client.workflow import WorkflowError, build_prompt, find_node, load_workflow

# The video's name on the server. The same for every job, so that the prompt (which the MP4 carries as metadata)
# and therefore the file are the same whichever server makes it; ComfyUI numbers the files.
OUTPUT_PREFIX = "framepack_service/video"
Unreachable = (ComfyConnectionError, ComfyTimeout)
# The files a shipped workflow's loaders name, by node class and input, with the models/ folder each lies in
# (ComfyUI's folder names); the model is FramePackModelLoader's and is asked by model_choices.
LOADER_FILES = {("DualCLIPLoader", "clip_name1"): "text_encoders", ("DualCLIPLoader", "clip_name2"): "text_encoders",
                ("VAELoader", "vae_name"): "vae", ("CLIPVisionLoader", "clip_name"): "clip_vision"}
MODEL_INPUT = ("FramePackModelLoader", "model")
SAFETY_NODE, SAFETY_FOLDER = "FramePackSafetyChecker", "nsfw_detector"  # classifier: <folder>/model.safetensors


class ServerDown(Exception):
    """The server did not answer (refused, reset, timed out)."""


class Rejected(Exception):
    """The server refused the prompt (validation); the message names the parameter where it can."""


@dataclass
class ServerStatus:
    queue_length: int  # running + pending prompts, ours or not
    prompt_ids: set = field(default_factory=set)
    running: set = field(default_factory=set)


def _client(url: str, timeout: float) -> ComfyClient:
    return ComfyClient(url, timeout=timeout)


def status(url: str, timeout: float) -> ServerStatus:
    """The server's queue; ServerDown when it does not answer."""
    try:
        queue = _client(url, timeout).queue()
    except (ComfyError, OSError, ValueError) as err:
        raise ServerDown(str(err)) from err
    running, pending = read_queue(queue)
    return ServerStatus(queue_length=len(running) + len(pending), prompt_ids=running | pending, running=running)


def model_choices(url: str, timeout: float) -> set[str]:
    """The model files the server's Load FramePack Model node offers; ServerDown when it does not answer."""
    try:
        info = _client(url, timeout).object_info("FramePackModelLoader")
    except (ComfyError, OSError, ValueError) as err:
        raise ServerDown(str(err)) from err
    node = info.get("FramePackModelLoader") or {}
    return {str(o) for o in _combo_options((node.get("input") or {}).get("required", {}).get("model") or [])}


def _combo_options(spec: list) -> list:
    if spec and isinstance(spec[0], list):  # [[choices...], {options}]
        return spec[0]
    if len(spec) > 1 and isinstance(spec[1], dict):  # ["COMBO", {"options": [choices...]}]
        return spec[1].get("options", [])
    return []


def other_files(url: str, timeout: float) -> dict[tuple[str, str], set[str]]:
    """What the server's loaders offer besides the model: {(node class, input): files}, and
    {(SAFETY_NODE, "classifier"): classifier folders} from models/nsfw_detector (absent when the server does not
    list that folder); ServerDown when it does not answer."""
    client = _client(url, timeout)
    found: dict[tuple[str, str], set[str]] = {}
    try:
        for node in sorted({n for n, _ in LOADER_FILES}):
            required = ((client.object_info(node).get(node) or {}).get("input") or {}).get("required", {})
            for (cls, name) in LOADER_FILES:
                if cls == node:
                    found[(cls, name)] = {str(o) for o in _combo_options(required.get(name) or [])}
    except (ComfyError, OSError, ValueError) as err:
        raise ServerDown(str(err)) from err
    try:
        listed = client._get_json(f"/models/{SAFETY_FOLDER}")  # noqa: SLF001 - the client's plain GET
        found[(SAFETY_NODE, "classifier")] = {str(f).replace("\\", "/").rsplit("/model.safetensors", 1)[0]
                                              for f in listed if str(f).endswith("model.safetensors")}
    except (ComfyError, OSError, ValueError, TypeError):
        pass  # an older ComfyUI, or no such folder registered: the classifier cannot be checked up front
    return found


@lru_cache(maxsize=64)
def needed_files(workflow: str, model_file: str | None, safety: bool) -> tuple[tuple[str, str, str, str], ...]:
    """The files a job of ``workflow`` needs on a server: (node class, input, file, models/ folder)."""
    graph = load_workflow(workflow)
    needed = [(*MODEL_INPUT, workflow_model(workflow, model_file), "diffusion_models")]
    for node in graph.values():
        for (cls, name), folder in LOADER_FILES.items():
            value = node.get("inputs", {}).get(name) if node.get("class_type") == cls else None
            if isinstance(value, str):
                needed.append((cls, name, value, folder))
        if safety and node.get("class_type") == SAFETY_NODE:
            needed.append((SAFETY_NODE, "classifier", str(node.get("inputs", {}).get("classifier")), SAFETY_FOLDER))
    return tuple(dict.fromkeys(needed))


def workflow_model(workflow: str, model_file: str | None) -> str:
    """The model file a job of ``workflow`` needs (the override, else the workflow's own)."""
    return model_file or find_node(load_workflow(workflow), "FramePackModelLoader")[1]["inputs"]["model"]


def without_paths(text: str, paths) -> str:
    """``text`` with each of the service's file ``paths`` replaced by its bare name (an API caller is not told
    where the service keeps its files)."""
    for path in sorted((str(p) for p in paths if p), key=len, reverse=True):
        text = text.replace(path, Path(path).name)
    return text


def submit(url: str, params: HostedParams, workflow: str, model_file: str | None, prompt_id: str,
           timeout: float) -> dict:
    """Uploads the images, fills the workflow and queues it as ``prompt_id``; returns the filled prompt.
    ServerDown when the server does not answer, Rejected when it refuses the prompt."""
    client = _client(url, timeout)
    try:
        start = upload_image(client, params.image)
        end = upload_image(client, params.end_image) if params.end_image else None
        graph = build_prompt(params, load_workflow(workflow), start_image_name=start,
                             end_image_name=end, model=model_file, filename_prefix=OUTPUT_PREFIX)
        client.queue_prompt(graph, prompt_id=prompt_id)
    except PromptRejected as err:
        raise Rejected(describe_rejection(err, graph)) from err
    except Unreachable as err:
        raise ServerDown(str(err)) from err
    except (WorkflowError, JobError) as err:  # said to API callers: the service's own files by name only
        raise Rejected(without_paths(str(err), (params.image, params.end_image, workflow))) from err
    except ComfyHTTPError as err:
        if err.status >= 500:
            raise ServerDown(str(err)) from err
        raise Rejected(f"the server refused the job: {err}") from err
    return graph


def outcome(url: str, prompt_id: str, graph: dict, params: dict, timeout: float) -> Outcome:
    """Where ``prompt_id`` stands on the server (framepack_client.outcome: queued, running, lost, or finished with
    its results); ServerDown when it does not answer."""
    try:
        return locate(_client(url, timeout), prompt_id, graph, params)
    except (ComfyError, OSError, ValueError) as err:
        raise ServerDown(str(err)) from err


def save_video(url: str, ref: dict, path, timeout: float) -> int:
    """Streams a finished video from the server to ``path`` (never whole in memory); its size. ServerDown when
    the server does not answer or the download fails."""
    try:
        return _client(url, timeout).download(ref["filename"], ref.get("subfolder", ""), ref.get("type", "output"),
                                              path, timeout=timeout)
    except (ComfyError, OSError) as err:
        raise ServerDown(str(err)) from err


def stop(url: str, prompt_id: str, timeout: float) -> None:
    """Removes ``prompt_id`` from the server's queue, or interrupts it if it runs. Best effort."""
    client = _client(url, timeout)
    try:
        client.delete_queued([prompt_id])
        client.interrupt(prompt_id)
    except (ComfyError, OSError):
        pass
