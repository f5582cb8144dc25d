"""The hosted FramePack APIs' parameters (image-to-video and first+last frame), validated locally, and how they
fill the shipped API workflows.

Names, defaults and ranges follow the hosted APIs: ``image`` (required), ``end_image``, ``strength`` (only with
``end_image``), ``prompt`` (required), ``negative_prompt``, ``aspect_ratio``, ``resolution``, ``num_frames``
(default larger with an end image), ``num_inference_steps``, ``guidance_scale``, ``cfg_scale`` and ``seed``
(-1 = random). Local extras: ``aspect_ratio`` "auto" (keep the start image's shape) and ``resolution`` "custom"
with ``width``/``height``. :data:`SPECS` holds every range and default; those the nodes share come from
``framepack_core.limits`` (a module without torch), so a request the client accepts is one the nodes accept.
``enable_safety_checker`` (false; true switches on the NSFW checker node that the shipped workflows carry) is
the hosted APIs' switch. Beyond the hosted APIs: ``video`` (a video to continue, instead of ``image``; the output is
the input followed by ``num_frames`` new frames, or the new frames alone with ``new_only``) and ``text_to_video``
(no image at all: a blank start, never in the output). ``image`` is required unless one of those two is given.

Everything is checked before anything is sent to a server: :meth:`HostedParams.from_mapping` collects every
problem and raises one :class:`ValidationError` whose lines name the input and how to fix it.

:func:`build_prompt` fills a copy of an API-format workflow. Nodes are found by ``class_type`` and, where a class
appears more than once, by ``_meta.title`` ("Start image", "End image", "Positive prompt", "Negative prompt"):
node ids never matter, so a re-exported or hand-edited workflow works as long as those titles are kept.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from framepack_core.limits import (ASPECT_RATIOS, AUTO, BLANK_KINDS, CUSTOM_RESOLUTION, DEFAULT_CFG,
                                   DEFAULT_END_STRENGTH, DEFAULT_FRAMES, DEFAULT_FRAMES_WITH_END, DEFAULT_GUIDANCE,
                                   DEFAULT_STEPS, FPS, MAX_CFG, MAX_FRAMES, MAX_GUIDANCE, MAX_SIDE, MAX_STEPS,
                                   MIN_FRAMES, MIN_SIDE, MIN_STEPS, RESOLUTION_SIZES, SIDE_STEP, START_IMAGE)

from .media import VIDEO_KINDS, check_media_source, is_url

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

MAX_PROMPT_CHARS = 500
MAX_SEED = 2_147_483_647  # the hosted APIs' seeds are 32-bit
DEFAULT_STRENGTH = DEFAULT_END_STRENGTH
# The hosted APIs' choices first, then the local extras.
ASPECT_CHOICES = (*(a for a in ASPECT_RATIOS if a != AUTO), AUTO)
RESOLUTION_CHOICES = (*RESOLUTION_SIZES, CUSTOM_RESOLUTION)
# Names the hosted APIs use for the same inputs (fal's first+last-frame API says image_url / end_image_url).
ALIASES = {"image_url": "image", "end_image_url": "end_image"}


class ValidationError(ValueError):
    """The parameters are not acceptable; ``problems`` holds one line per bad input (name, what is wrong, the fix)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid parameters:\n" + "\n".join(f"  - {p}" for p in self.problems))


class WorkflowError(ValueError):
    """The API workflow lacks a node the parameters need (or has it more than once)."""


@dataclass(frozen=True)
class ParamSpec:
    """One hosted parameter: its type ("int", "float", "str", "image", "choice", "bool"), range or choices,
    default."""
    name: str
    kind: str
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False

    def range_text(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None:
            return f"from {_num(self.low)} to {_num(self.high)}"
        return ""

    def default_text(self) -> str:
        return _num(self.default) if isinstance(self.default, float) else str(self.default)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("image", "image", "start image (required unless video or text_to_video): a local file or an http(s) "
              "URL", required=True),
    ParamSpec("end_image", "image", "end image (first+last-frame video): a local file or an http(s) URL"),
    ParamSpec("strength", "float", "how strongly the video ends on end_image (1 = exactly); only with end_image",
              DEFAULT_STRENGTH, 0, 1),
    ParamSpec("prompt", "str", f"what happens in the video (required, at most {MAX_PROMPT_CHARS} characters)",
              required=True),
    ParamSpec("negative_prompt", "str", "what to avoid (used when cfg_scale > 1)", ""),
    ParamSpec("aspect_ratio", "choice", "output shape; auto keeps the start image's", ASPECT_CHOICES[0],
              choices=ASPECT_CHOICES),
    ParamSpec("resolution", "choice", "output size; custom uses width and height", RESOLUTION_CHOICES[0],
              choices=RESOLUTION_CHOICES),
    ParamSpec("width", "int", f"video width with resolution custom (multiple of {SIDE_STEP})", None,
              MIN_SIDE, MAX_SIDE),
    ParamSpec("height", "int", f"video height with resolution custom (multiple of {SIDE_STEP})", None,
              MIN_SIDE, MAX_SIDE),
    ParamSpec("num_frames", "int", f"frames at {FPS} fps (default {DEFAULT_FRAMES}, {DEFAULT_FRAMES_WITH_END} with "
              "end_image)", None, MIN_FRAMES, MAX_FRAMES),
    ParamSpec("num_inference_steps", "int", "sampling steps per section", DEFAULT_STEPS, MIN_STEPS, MAX_STEPS),
    ParamSpec("guidance_scale", "float", "distilled guidance (prompt adherence)", DEFAULT_GUIDANCE, 0, MAX_GUIDANCE),
    ParamSpec("cfg_scale", "float", f"real classifier-free guidance; {DEFAULT_CFG:g} = off (twice as fast)",
              DEFAULT_CFG, 0, MAX_CFG),
    ParamSpec("seed", "int", "random seed; -1 picks one (the seed used is reported)", -1, -1, MAX_SEED),
    ParamSpec("enable_safety_checker", "bool", "score the video with the NSFW safety checker (its classifier must be "
              "in ComfyUI's models/nsfw_detector; README)", False),
    ParamSpec("video", "video", f"a 30 fps video to continue instead of a start image ({VIDEO_KINDS}): a local file "
              "or an http(s) URL; num_frames counts the new frames; aspect_ratio defaults to auto (the video's)"),
    ParamSpec("new_only", "bool", "with video: the result holds only the new frames (default: the input, then them)",
              False),
    ParamSpec("text_to_video", "bool", "start from the prompt alone, without an image (a blank start, never in the "
              "output)", False),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}


def spec(name: str) -> ParamSpec:
    return SPEC_BY_NAME[name]


# -- value checks ------------------------------------------------------------------------------------------------

def _type_word(value: Any) -> str:
    return "text, not a number" if isinstance(value, str) else f"a {type(value).__name__}, not a number"


def _check_number(s: ParamSpec, value: Any) -> str | None:
    want = "a whole number" if s.kind == "int" else "a number"
    rng = s.range_text()
    if isinstance(value, bool):
        return f"{s.name} must be {want} {rng}, got {value!r} (a boolean)"
    if s.kind == "int" and not isinstance(value, int):
        if isinstance(value, float):
            return f"{s.name} must be {want} {rng}, got {value!r}; drop the fraction"
        return f"{s.name} must be {want} {rng}, got {value!r} ({_type_word(value)})"
    if s.kind == "float":
        if not isinstance(value, (int, float)):
            return f"{s.name} must be {want} {rng}, got {value!r} ({_type_word(value)})"
        if not math.isfinite(value):
            return f"{s.name} must be a finite number {rng}, got {value!r}"
    if not s.low <= value <= s.high:
        return f"{s.name} {value!r} is out of range; use a value {rng}"
    return None


def parse_cli_value(name: str, text: str) -> Any:
    """A command-line string as the parameter's type ("25" -> 25 for ints, "0.5" -> 0.5 for floats). Text that is
    not a number is returned unchanged, so validation reports it with the parameter's own message."""
    s = spec(name)
    if s.kind == "bool":
        return {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
                "off": False}.get(text.strip().lower(), text)
    try:
        if s.kind == "int":
            return int(text.strip())
        if s.kind == "float":
            return float(text.strip())
    except ValueError:
        try:
            return float(text) if s.kind == "int" else text  # "30.5" -> 30.5: reported as "drop the fraction"
        except ValueError:
            return text
    return text


# -- the parameters ----------------------------------------------------------------------------------------------

@dataclass
class HostedParams:
    """One generation request in the hosted APIs' terms. Build it with :meth:`from_mapping` (validates); a
    directly constructed instance can be checked with :meth:`problems` / :meth:`validate`.

    ``strength`` and ``num_frames`` are None when not given: :attr:`end_strength` and :attr:`frames` apply the
    hosted defaults (DEFAULT_STRENGTH; DEFAULT_FRAMES, or DEFAULT_FRAMES_WITH_END with an end image).
    """
    image: str | None
    prompt: str
    end_image: str | None = None
    strength: float | None = None
    negative_prompt: str = ""
    aspect_ratio: str = ASPECT_CHOICES[0]
    resolution: str = RESOLUTION_CHOICES[0]
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    num_inference_steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    cfg_scale: float = DEFAULT_CFG
    seed: int = -1
    enable_safety_checker: bool = False
    video: str | None = None
    new_only: bool = False
    text_to_video: bool = False
    extra: dict = field(default_factory=dict, repr=False)  # accepted hosted keys we do not use

    @property
    def frames(self) -> int:
        if self.num_frames is not None:
            return self.num_frames
        return DEFAULT_FRAMES_WITH_END if self.end_image else DEFAULT_FRAMES

    @property
    def end_strength(self) -> float:
        return DEFAULT_STRENGTH if self.strength is None else float(self.strength)

    def problems(self, local_files: bool = True) -> list[str]:
        """Every problem, one line each (empty when the parameters are valid). Files are checked to exist and to
        be images within the size limits; URLs and data: URIs only for their form (they are fetched when the job is
        sent). Without ``local_files`` an image must be a URL or a data: URI (input from someone else)."""
        out: list[str] = []
        for s in SPECS:
            value = getattr(self, s.name)
            if value is None:
                if self.is_required(s.name):
                    out.append(f"{s.name} is required: {s.help}")
                continue
            if s.kind in ("image", "video"):
                problem = check_media_source(s.name, value, s.kind, local_files)
            elif s.kind in ("int", "float"):
                problem = _check_number(s, value)
            elif s.kind == "choice":
                problem = None if value in s.choices else f"{s.name} {value!r} is not {s.range_text()}"
            elif s.kind == "bool":
                problem = None if isinstance(value, bool) else f"{s.name} must be true or false, got {value!r}"
            else:
                problem = None if isinstance(value, str) else \
                    f"{s.name} must be text, got {value!r} ({type(value).__name__})"
            if problem:
                out.append(problem)
        if isinstance(self.prompt, str):
            if not self.prompt.strip():
                out.append("prompt is empty; describe the motion, e.g. \"the girl turns her head and smiles\"")
            elif len(self.prompt) > MAX_PROMPT_CHARS:
                out.append(f"prompt has {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}: shorten it")
        out += self._start_problems()
        if self.strength is not None and not self.end_image:
            out.append("strength is only used with end_image (it sets how strongly the video ends on the end "
                       "image); add end_image or remove strength")
        if self.resolution == CUSTOM_RESOLUTION:
            for name in ("width", "height"):
                value = getattr(self, name)
                if value is None:
                    out.append(f"{name} is required with resolution custom (a multiple of {SIDE_STEP} from "
                               f"{MIN_SIDE} to {MAX_SIDE})")
                elif isinstance(value, int) and not isinstance(value, bool) and MIN_SIDE <= value <= MAX_SIDE \
                        and value % SIDE_STEP:
                    # out of range is already reported; in range, both neighbouring multiples are in range too
                    out.append(f"{name} {value} is not a multiple of {SIDE_STEP}; use "
                               f"{value // SIDE_STEP * SIDE_STEP} or {(value // SIDE_STEP + 1) * SIDE_STEP}")
        elif self.width is not None or self.height is not None:
            out.append(f"width and height are used only with resolution custom (resolution is "
                       f"{self.resolution!r}); set resolution to custom or remove them")
        return out

    def is_required(self, name: str) -> bool:
        """image is required unless the job continues a video or starts from text alone."""
        if name == "image":
            return not (self.video or self.text_to_video is True)
        return SPEC_BY_NAME[name].required

    def _start_problems(self) -> list[str]:
        out = []
        if self.image and self.video:
            out.append("image and video are both given: give image to start from a picture, or video to continue a "
                       "video, not both")
        if self.text_to_video is True and (self.image or self.video):
            given = " and ".join(n for n in ("image", "video") if getattr(self, n))
            out.append(f"text_to_video starts from no picture, but {given} is given: remove {given}, or drop "
                       "text_to_video")
        if self.new_only is True and not self.video:
            out.append("new_only is only used with video (it drops the input from the result); add video or remove "
                       "new_only")
        return out

    def validate(self) -> "HostedParams":
        problems = self.problems()
        if problems:
            raise ValidationError(problems)
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: str | Path | None = None,
                     local_files: bool = True) -> "HostedParams":
        """Validated parameters from a hosted-style request body (``image_url``/``end_image_url`` accepted as the
        hosted APIs spell them). Unknown keys are errors. A relative image path that does not exist from the
        current folder is looked up in ``base_dir`` (e.g. the folder of a batch file). ``local_files=False`` is for
        bodies from someone else (the service, --untrusted-input): an image path is then refused, so the body cannot
        make us read and upload a file of this machine."""
        if not isinstance(data, Mapping):
            raise ValidationError([f"the parameters must be a JSON object, got {type(data).__name__}"])
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in data.items():
            name = ALIASES.get(key, key)
            if name in values:
                problems.append(f"{name} is given twice (as {name} and {key}); keep one")
            elif name in known:
                if value is not None:  # JSON null means "not given": the default applies
                    values[name] = value
            else:
                problems.append(f"unknown parameter {key!r}; known: {', '.join(s.name for s in SPECS)}")
        for name in ("image", "end_image", "video"):
            value = values.get(name)
            if local_files and base_dir is not None and isinstance(value, str) and value and not is_url(value):
                path = Path(value).expanduser()
                if not path.is_absolute() and not path.exists() and (Path(base_dir) / path).exists():
                    values[name] = str(Path(base_dir) / path)
        if values.get("video") and "aspect_ratio" not in values:
            values["aspect_ratio"] = AUTO  # a continuation keeps the input's shape unless asked otherwise
        params = cls(**{"image": None, "prompt": None, **values}, extra=extra)
        missing = [s.name for s in SPECS if params.is_required(s.name) and s.name not in values]
        problems += [f"{name} is required: {spec(name).help}" for name in missing]
        problems += [p for p in params.problems(local_files)
                     if not any(p.startswith(f"{m} is required") for m in missing)]
        if problems:
            raise ValidationError(problems)
        return params

    def to_dict(self) -> dict[str, Any]:
        """The parameters (those not given, None, left out), e.g. for the job store; ``from_mapping`` reads it back."""
        out = {s.name: getattr(self, s.name) for s in SPECS if getattr(self, s.name) is not None}
        out.update(self.extra)
        return out

    def effective(self) -> dict[str, Any]:
        """Every parameter with the defaults applied, as the job will run."""
        out = self.to_dict()
        out["num_frames"] = self.frames
        if self.end_image:
            out["strength"] = self.end_strength
        return out


# -- workflows ---------------------------------------------------------------------------------------------------

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


def find_nodes(graph: Mapping[str, dict], class_type: str, title: str | None = None) -> list[tuple[str, dict]]:
    return [(nid, node) for nid, node in graph.items() if node.get("class_type") == class_type
            and (title is None or (node.get("_meta") or {}).get("title") == title)]


def find_node(graph: Mapping[str, dict], class_type: str, title: str | None = None) -> tuple[str, dict]:
    """The one node of ``class_type`` (titled ``title`` when given); WorkflowError if there is none or several."""
    found = find_nodes(graph, class_type, title)
    what = f"{class_type} node" + (f" titled {title!r}" if title else "")
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
    """Fills what the video starts from and returns the conditioning node: the start image (LoadImage "Start
    image" into FramePackImageConditioning), a video to continue (LoadVideo "Input video" into
    FramePackVideoConditioning), or nothing (text-to-video: the start image node is removed and a blank start kind
    chosen unless the workflow has one)."""
    if params.video:
        find_node(graph, "LoadVideo", TITLE_VIDEO)[1]["inputs"]["file"] = video_name or Path(params.video).name
        cond_id, cond = find_node(graph, "FramePackVideoConditioning")
        cond["inputs"]["keep_input"] = not params.new_only
        return cond_id, cond
    cond_id, cond = find_node(graph, "FramePackImageConditioning")
    if params.text_to_video:
        for start_id, _ in find_nodes(graph, "LoadImage", TITLE_START):
            _remove_node(graph, start_id)
        if cond["inputs"].get("start_kind", START_IMAGE) == START_IMAGE:
            cond["inputs"]["start_kind"] = BLANK_KINDS[0]
        return cond_id, cond
    _, start = find_node(graph, "LoadImage", TITLE_START)
    start["inputs"]["image"] = start_image_name or Path(params.image).name
    return cond_id, cond


def build_prompt(params: HostedParams, workflow: Mapping[str, dict], *, start_image_name: str | None = None,
                 end_image_name: str | None = None, model: str | None = None,
                 filename_prefix: str | None = None, video_name: str | None = None) -> dict:
    """A filled copy of ``workflow`` (API format) for ``params``; the input is not modified.

    ``start_image_name`` / ``end_image_name`` / ``video_name``: the names the files have in the server's input
    folder (what ``/upload/image`` returned); by default their file names. ``model`` replaces the model file of the
    FramePackModelLoader; ``filename_prefix`` the video's output prefix. Without an end image an "End image" node
    is removed (with its link); with one, a workflow that has none gets one wired to the conditioning node.
    """
    graph = copy.deepcopy(dict(workflow))
    params.validate()
    cond_id, cond = _fill_start(graph, params, start_image_name, video_name)
    ends = find_nodes(graph, "LoadImage", TITLE_END)
    if params.end_image:
        end_name = end_image_name or Path(params.end_image).name
        if len(ends) > 1:
            find_node(graph, "LoadImage", TITLE_END)  # raises the "several" error
        if ends:
            ends[0][1]["inputs"]["image"] = end_name
            cond["inputs"]["end_image"] = [ends[0][0], 0]
        else:
            new_id = _new_node_id(graph)
            graph[new_id] = {"class_type": "LoadImage", "inputs": {"image": end_name},
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
    ("LoadImage", TITLE_START, "image"): "image",
    ("LoadVideo", TITLE_VIDEO, "file"): "video",
    ("FramePackVideoConditioning", None, "keep_input"): "new_only",
    ("FramePackVideoConditioning", None, "aspect_ratio"): "aspect_ratio",
    ("FramePackVideoConditioning", None, "resolution"): "resolution",
    ("FramePackVideoConditioning", None, "custom_width"): "width",
    ("FramePackVideoConditioning", None, "custom_height"): "height",
    ("FramePackVideoConditioning", None, "strength"): "strength",
    ("FramePackImageConditioning", None, "start_kind"): "text_to_video",
    ("LoadImage", TITLE_END, "image"): "end_image",
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
