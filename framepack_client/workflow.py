"""The shipped API workflows and how hosted parameters fill them: which workflow a request runs, the node each
parameter goes to, and which parameter a node input of the server's errors stands for.

:func:`build_prompt` fills a copy of an API-format workflow. Nodes are found by ``class_type`` and, where a class
appears more than once, by ``_meta.title`` ("Start image", "End image", "Positive prompt", "Negative prompt"):
node ids never matter, so a re-exported or hand-edited workflow works as long as those titles are kept.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Mapping

from framepack_core.limits import BLANK_KINDS, CUSTOM_RESOLUTION, START_IMAGE

from .hosted import HostedParams


def _api_workflows_dir() -> Path:
    """The shipped API workflows: the package's own copy when pip-installed (pyproject maps workflows/api there),
    else the checkout's workflows/api."""
    installed = Path(__file__).resolve().parent / "api_workflows"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "workflows" / "api"


API_WORKFLOWS_DIR = _api_workflows_dir()

WORKFLOW_I2V, WORKFLOW_FLF2V, WORKFLOW_F1 = "framepack_i2v", "framepack_first_last_frame", "framepack_f1"
WORKFLOW_EXTEND, WORKFLOW_T2V = "framepack_extend", "framepack_t2v"
TITLE_START, TITLE_END = "Start image", "End image"
TITLE_VIDEO = "Input video"
TITLE_POSITIVE, TITLE_NEGATIVE = "Positive prompt", "Negative prompt"
SAFETY_NODE = "FramePackSafetyChecker"
# The loaders a workflow may read its files with: the pack's own (the shipped workflows': input folder only, bounded
# before decoding, nodes/load_files.py) or ComfyUI's core ones (a user's own workflow)
IMAGE_LOADERS = ("FramePackLoadImage", "LoadImage")
VIDEO_LOADERS = ("FramePackLoadVideo", "LoadVideo")


class WorkflowError(ValueError):
    """The API workflow lacks a node the parameters need (or has it more than once)."""


def workflow_name(params: HostedParams, f1: bool = False) -> str:
    """The shipped workflow for these parameters: video continuation or text-to-video when asked (with the model
    --f1 picks, :func:`default_model`), else F1 when asked, else first+last frame with an end image, else I2V (an
    end image with F1 or these is added to the graph by :func:`build_prompt`)."""
    if params.video:
        return WORKFLOW_EXTEND
    if params.text_to_video:
        return WORKFLOW_T2V
    if f1:
        return WORKFLOW_F1
    return WORKFLOW_FLF2V if params.end_image else WORKFLOW_I2V


def model_id(params: HostedParams, f1: bool = False) -> str:
    """A hosted-style model id for the result: framepack/i2v, framepack/flf2v, framepack/f1, framepack/f1-flf2v;
    framepack/extend, framepack/t2v (f1-... with F1)."""
    if params.video or params.text_to_video:
        return ("framepack/f1-" if f1 else "framepack/") + ("extend" if params.video else "t2v")
    if f1:
        return "framepack/f1-flf2v" if params.end_image else "framepack/f1"
    return "framepack/flf2v" if params.end_image else "framepack/i2v"


def default_model(params: HostedParams, f1: bool = False) -> str | None:
    """The model file a shipped video-continuation or text-to-video workflow runs for --f1 or not: the one in the
    shipped F1 or I2V workflow (those two hold the file names). None for the other workflows, whose own model is
    the right one."""
    if not (params.video or params.text_to_video):
        return None
    graph = load_workflow(WORKFLOW_F1 if f1 else WORKFLOW_I2V)
    return find_node(graph, "FramePackModelLoader")[1]["inputs"]["model"]


def load_workflow(name_or_path: str | Path) -> dict:
    """A shipped API workflow by name (framepack_i2v, framepack_first_last_frame, framepack_f1) or any API-format
    workflow file."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = API_WORKFLOWS_DIR / f"{name_or_path}.json"
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"workflow file {str(path)!r} does not exist") from None
    except ValueError as err:
        raise WorkflowError(f"workflow file {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(graph, dict) or not graph or not all(
            isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise WorkflowError(f"{str(path)!r} is not an API-format workflow (an object of nodes with class_type); "
                            "export it from ComfyUI with 'Export (API)'")
    return graph


def find_nodes(graph: Mapping[str, dict], class_type: str | tuple[str, ...],
               title: str | None = None) -> list[tuple[str, dict]]:
    kinds = (class_type,) if isinstance(class_type, str) else class_type
    return [(nid, node) for nid, node in graph.items() if node.get("class_type") in kinds
            and (title is None or (node.get("_meta") or {}).get("title") == title)]


def find_node(graph: Mapping[str, dict], class_type: str | tuple[str, ...],
              title: str | None = None) -> tuple[str, dict]:
    """The one node of ``class_type`` (or of one of several; titled ``title`` when given); WorkflowError if there
    is none or several."""
    found = find_nodes(graph, class_type, title)
    kinds = (class_type,) if isinstance(class_type, str) else class_type
    what = f"{' or '.join(kinds)} node" + (f" titled {title!r}" if title else "")
    if not found:
        raise WorkflowError(f"the workflow has no {what}; use a shipped workflow or keep that node"
                            + (" and its title" if title else ""))
    if len(found) > 1:
        raise WorkflowError(f"the workflow has {len(found)} {what}s ({', '.join(n for n, _ in found)}); "
                            "the client fills exactly one")
    return found[0]


def _remove_node(graph: dict, node_id: str) -> None:
    del graph[node_id]
    for node in graph.values():
        inputs = node.get("inputs", {})
        for key in [k for k, v in inputs.items() if isinstance(v, list) and len(v) == 2 and str(v[0]) == node_id]:
            del inputs[key]


def _new_node_id(graph: Mapping[str, dict]) -> str:
    numbers = [int(n) for n in graph if str(n).isdigit()]
    return str(max(numbers, default=0) + 1)


def _fill_start(graph: dict, params: HostedParams, start_image_name: str | None,
                video_name: str | None) -> tuple[str, dict]:
    """Fills what the video starts from and returns the conditioning node: the start image (an image loader "Start
    image" into FramePackImageConditioning), a video to continue (a video loader "Input video" into
    FramePackVideoConditioning), or nothing (text-to-video: the start image node is removed and a blank start kind
    chosen unless the workflow has one)."""
    if params.video:
        find_node(graph, VIDEO_LOADERS, TITLE_VIDEO)[1]["inputs"]["file"] = video_name or Path(params.video).name
        cond_id, cond = find_node(graph, "FramePackVideoConditioning")
        cond["inputs"]["keep_input"] = not params.new_only
        return cond_id, cond
    cond_id, cond = find_node(graph, "FramePackImageConditioning")
    if params.text_to_video:
        for start_id, _ in find_nodes(graph, IMAGE_LOADERS, TITLE_START):
            _remove_node(graph, start_id)
        if cond["inputs"].get("start_kind", START_IMAGE) == START_IMAGE:
            cond["inputs"]["start_kind"] = BLANK_KINDS[0]
        return cond_id, cond
    _, start = find_node(graph, IMAGE_LOADERS, TITLE_START)
    start["inputs"]["image"] = start_image_name or Path(params.image).name
    return cond_id, cond


def build_prompt(params: HostedParams, workflow: Mapping[str, dict], *, start_image_name: str | None = None,
                 end_image_name: str | None = None, model: str | None = None,
                 filename_prefix: str | None = None, video_name: str | None = None) -> dict:
    """A filled copy of ``workflow`` (API format) for ``params`` (validated: :meth:`HostedParams.from_mapping`); the
    input is not modified.

    ``start_image_name`` / ``end_image_name`` / ``video_name``: the names the files have in the server's input
    folder (what ``/upload/image`` returned); by default their file names. ``model`` replaces the model file of the
    FramePackModelLoader; ``filename_prefix`` the video's output prefix. Without an end image an "End image" node
    is removed (with its link); with one, a workflow that has none gets one wired to the conditioning node.
    """
    graph = copy.deepcopy(dict(workflow))
    cond_id, cond = _fill_start(graph, params, start_image_name, video_name)
    ends = find_nodes(graph, IMAGE_LOADERS, TITLE_END)
    if params.end_image:
        end_name = end_image_name or Path(params.end_image).name
        if len(ends) > 1:
            find_node(graph, IMAGE_LOADERS, TITLE_END)  # raises the "several" error
        if ends:
            ends[0][1]["inputs"]["image"] = end_name
            cond["inputs"]["end_image"] = [ends[0][0], 0]
        else:
            new_id = _new_node_id(graph)
            graph[new_id] = {"class_type": IMAGE_LOADERS[0], "inputs": {"image": end_name},
                             "_meta": {"title": TITLE_END}}
            cond["inputs"]["end_image"] = [new_id, 0]
        cond["inputs"]["strength"] = params.end_strength
    else:
        for end_id, _ in ends:
            _remove_node(graph, end_id)
    cond["inputs"]["aspect_ratio"] = params.aspect_ratio
    cond["inputs"]["resolution"] = params.resolution
    if params.resolution == CUSTOM_RESOLUTION:
        cond["inputs"]["custom_width"] = params.width
        cond["inputs"]["custom_height"] = params.height

    checkers = find_nodes(graph, SAFETY_NODE)
    if params.enable_safety_checker and not checkers:
        raise WorkflowError(f"enable_safety_checker is true but the workflow has no {SAFETY_NODE} node; use a shipped "
                            "workflow or add the node (fed by FramePackVideoCombine's video output)")
    for _, checker in checkers:
        checker["inputs"]["enabled"] = bool(params.enable_safety_checker)

    find_node(graph, "CLIPTextEncode", TITLE_POSITIVE)[1]["inputs"]["text"] = params.prompt
    find_node(graph, "CLIPTextEncode", TITLE_NEGATIVE)[1]["inputs"]["text"] = params.negative_prompt

    sampler = find_node(graph, "FramePackSampler")[1]["inputs"]
    sampler.update(num_frames=params.frames, num_inference_steps=params.num_inference_steps,
                   guidance_scale=float(params.guidance_scale), cfg_scale=float(params.cfg_scale), seed=params.seed)
    if model is not None:
        find_node(graph, "FramePackModelLoader")[1]["inputs"]["model"] = model
    if filename_prefix is not None:
        find_node(graph, "FramePackVideoCombine")[1]["inputs"]["filename_prefix"] = filename_prefix
    return graph


# Where each hosted parameter lives in the workflow, to name it in the server's node errors:
# (class_type, title or None, node input) -> hosted name.
NODE_INPUTS = {
    ("FramePackSampler", None, "num_frames"): "num_frames",
    ("FramePackSampler", None, "num_inference_steps"): "num_inference_steps",
    ("FramePackSampler", None, "guidance_scale"): "guidance_scale",
    ("FramePackSampler", None, "cfg_scale"): "cfg_scale",
    ("FramePackSampler", None, "seed"): "seed",
    ("FramePackImageConditioning", None, "aspect_ratio"): "aspect_ratio",
    ("FramePackImageConditioning", None, "resolution"): "resolution",
    ("FramePackImageConditioning", None, "custom_width"): "width",
    ("FramePackImageConditioning", None, "custom_height"): "height",
    ("FramePackImageConditioning", None, "strength"): "strength",
    **{(loader, TITLE_START, "image"): "image" for loader in IMAGE_LOADERS},
    **{(loader, TITLE_VIDEO, "file"): "video" for loader in VIDEO_LOADERS},
    ("FramePackVideoConditioning", None, "keep_input"): "new_only",
    ("FramePackVideoConditioning", None, "aspect_ratio"): "aspect_ratio",
    ("FramePackVideoConditioning", None, "resolution"): "resolution",
    ("FramePackVideoConditioning", None, "custom_width"): "width",
    ("FramePackVideoConditioning", None, "custom_height"): "height",
    ("FramePackVideoConditioning", None, "strength"): "strength",
    ("FramePackImageConditioning", None, "start_kind"): "text_to_video",
    **{(loader, TITLE_END, "image"): "end_image" for loader in IMAGE_LOADERS},
    ("CLIPTextEncode", TITLE_POSITIVE, "text"): "prompt",
    ("CLIPTextEncode", TITLE_NEGATIVE, "text"): "negative_prompt",
    ("FramePackModelLoader", None, "model"): "model (--model)",
    (SAFETY_NODE, None, "enabled"): "enable_safety_checker",
}


def hosted_name(graph: Mapping[str, dict], node_id: str, input_name: str | None) -> str | None:
    """The hosted parameter (or client option) behind a node input of ``graph``, or None."""
    node = graph.get(node_id) or {}
    title = (node.get("_meta") or {}).get("title")
    kind = node.get("class_type")
    return NODE_INPUTS.get((kind, title, input_name)) or NODE_INPUTS.get((kind, None, input_name))
