"""What became of a prompt, read from what a ComfyUI server says about it: its ``/history`` entry (how it ended:
the videos, the seed the sampler used, the time, the safety checker's verdict, or why it failed), its ``/queue``
(waiting or running) or neither (lost), and the validation errors of a refused prompt.

:func:`read_history`, :func:`read_queue` and :func:`describe_rejection` are pure: they read answers the caller
got. :func:`locate` asks a server (the client object given) and reads its answers with them; the client's jobs and
the service's backend both follow their prompts with it. Everything the server sends is hostile text: it is made
printable before it goes into a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from framepack_core.limits import RANDOM_SEED

from .errors import PromptRejected
from .job_states import COMPLETED, FAILED, LOST, QUEUED, RUNNING
from .model_files import missing_models, missing_models_text
from .terminal import printable
from .workflow import IMAGE_LOADERS, SAFETY_NODE, find_nodes, hosted_name

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
END_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
_SEED_TEXT = re.compile(r"^seed: (-?\d+)", re.MULTILINE)


@dataclass
class Outcome:
    """Where a prompt stands on its server: QUEUED or RUNNING there, LOST (in neither its queue nor its history),
    or finished, COMPLETED or FAILED, with the rest read from its history entry."""
    state: str
    error: str = ""
    seed: int | None = None
    inference_ms: int | None = None
    videos: list = field(default_factory=list)  # [{filename, subfolder, type}] for /view
    nsfw: list = field(default_factory=list)  # per video: flagged by the safety checker
    nsfw_score: float | None = None  # the checker's top score, when it ran
    interrupted: bool = False  # it ended with execution_interrupted (a cancel)


def read_queue(queue: Mapping[str, Any]) -> tuple[set, set]:
    """(running, pending) prompt ids of a ``/queue`` answer; items are ``[number, prompt_id, ...]``."""
    def ids(key: str) -> set:
        return {item[1] for item in queue.get(key) or [] if isinstance(item, (list, tuple)) and len(item) > 1}
    return ids("queue_running"), ids("queue_pending")


def _sampler_seed(graph: Mapping[str, dict], outputs: dict) -> int | None:
    for node_id, _ in find_nodes(graph, "FramePackSampler"):
        ui = outputs.get(node_id) or {}
        for report in ui.get("framepack") or []:
            if isinstance(report, dict) and isinstance(report.get("seed"), int):
                return report["seed"]
        for text in ui.get("text") or []:
            match = _SEED_TEXT.search(str(text))
            if match:
                return int(match.group(1))
    return None


def safety_report(graph: Mapping[str, dict], outputs: dict) -> dict | None:
    """The safety checker's report ({enabled, flagged, score, ...}) from a /history entry's outputs, or None."""
    for node_id, _ in find_nodes(graph, SAFETY_NODE):
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


def _describe_failure(graph: Mapping[str, dict], params: Mapping[str, Any], kind: str, data: dict) -> str:
    """One line about how the prompt failed, from server text made printable (control characters escaped)."""
    node = f"{printable(data.get('node_type', '?'))} (node {printable(data.get('node_id', '?'))})"
    if kind == "execution_interrupted":
        return f"interrupted in {node}: the prompt was cancelled on the server (Cancel button or POST /interrupt)"
    message = printable(str(data.get("exception_message", "")).strip(), keep_newlines=True) or "no message"
    # ComfyUI names the class with its module, which for a custom node is a file system path: keep the class name
    kind = printable(str(data.get("exception_type") or "error").rsplit(".", 1)[-1])
    text = f"{node} failed: {kind}: {message}"
    node_id = str(data.get("node_id"))
    name = hosted_name(graph, node_id, "image") if data.get("node_type") in IMAGE_LOADERS else None
    if name:  # the image loaders know nothing of our parameters: say which of the user's files it was
        text += (f" - the {name} {params.get(name)!r} could not be decoded by the server; open it in an image "
                 "editor and save it again as PNG or JPEG")
    return text


def read_history(entry: Mapping[str, Any], graph: Mapping[str, dict] | None,
                 params: Mapping[str, Any]) -> Outcome:
    """How a finished prompt ended, from its /history ``entry``: COMPLETED with its videos, or FAILED with why.
    ``graph`` is the filled prompt that was queued (which nodes are the sampler and the safety checker, and which
    hosted parameter a node stands for); ``params`` the hosted parameters (a fixed seed, the user's file names)."""
    graph = graph or {}
    status_info = entry.get("status") or {}
    messages = [(m[0], m[1] if isinstance(m[1], dict) else {}) for m in status_info.get("messages") or []
                if isinstance(m, (list, tuple)) and len(m) > 1]
    stamps = {kind: data.get("timestamp") for kind, data in messages}
    end = next(((k, d) for k, d in messages if k in ("execution_error", "execution_interrupted")), None)
    outputs = entry.get("outputs") or {}
    result = Outcome(FAILED, interrupted=any(kind == "execution_interrupted" for kind, _ in messages))
    if end is not None:
        result.error = _describe_failure(graph, params, *end)
    elif status_info.get("status_str") not in (None, "success"):
        result.error = f"the server reports status {status_info.get('status_str')!r}"
    else:
        result.videos = _video_refs(outputs)
        if result.videos:
            result.state = COMPLETED
        else:
            result.error = "the prompt finished without a video output; the workflow needs a FramePackVideoCombine node"
    report = safety_report(graph, outputs)
    flagged = bool(report and report.get("enabled") and report["flagged"])
    result.nsfw = [flagged] * len(result.videos)
    result.nsfw_score = float(report["score"]) if report and report.get("enabled") else None
    seed = _sampler_seed(graph, outputs)
    if seed is None and result.state == COMPLETED and isinstance(params.get("seed"), int) \
            and params["seed"] != RANDOM_SEED:
        seed = params["seed"]  # a cached sampler reports nothing; a fixed seed is the seed used
    result.seed = seed
    start = stamps.get("execution_start")
    finish = next((stamps.get(k) for k in END_EVENTS if stamps.get(k) is not None), None)
    if isinstance(start, (int, float)) and isinstance(finish, (int, float)):
        result.inference_ms = int(round(finish - start))
    return result


def locate(client, prompt_id: str, graph: Mapping[str, dict] | None, params: Mapping[str, Any]) -> Outcome:
    """Where ``prompt_id`` stands on the server of ``client`` (a :class:`~framepack_client.server_api.ComfyClient`):
    its history (finished), else its queue (running or waiting), else lost. The server's errors propagate."""
    entry = client.history(prompt_id).get(prompt_id)
    if entry is None:
        running, pending = read_queue(client.queue())
        if prompt_id in running:
            return Outcome(RUNNING)
        if prompt_id in pending:
            return Outcome(QUEUED)
        # it may have finished between the two requests: the history is written before it leaves the queue
        entry = client.history(prompt_id).get(prompt_id)
        if entry is None:
            return Outcome(LOST)
    return read_history(entry, graph, params)


def describe_rejection(err: PromptRejected, graph: dict, folders: Mapping[str, str] | None = None) -> str:
    """The server's validation errors in the hosted parameters' terms where it names an input we filled. Missing
    model files come first, as one list (:func:`~framepack_client.model_files.missing_models_text`; ``folders``:
    the server's model directories when the caller asked it for them)."""
    missing, node_errors = missing_models(err.node_errors or {}, graph)
    if missing:
        rest = PromptRejected(err.url, err.body, err.error or {}, node_errors)
        others = describe_rejection(rest, graph) if node_errors else ""
        text = missing_models_text(missing, folders)
        return f"{text}\nalso: {others}" if others else text
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
