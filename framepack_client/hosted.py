"""The hosted FramePack APIs' parameters (image-to-video and first+last frame), validated locally.

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
problem and raises one :class:`ValidationError` whose lines name the input and how to fix it. How the parameters
fill an API workflow is :mod:`framepack_client.workflow`'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from framepack_core.limits import (ASPECT_RATIOS, AUTO, CUSTOM_RESOLUTION, DEFAULT_CFG, DEFAULT_END_STRENGTH,
                                   DEFAULT_FRAMES, DEFAULT_FRAMES_WITH_END, DEFAULT_GUIDANCE, DEFAULT_STEPS, FPS,
                                   HOSTED_RESOLUTION_CHOICES, MAX_CFG, MAX_FRAMES, MAX_GUIDANCE, MAX_HOSTED_SEED,
                                   MAX_HOSTED_PROMPT_CHARS, MAX_NEGATIVE_PROMPT_CHARS, MAX_SIDE, MAX_STEPS,
                                   MIN_FRAMES, MIN_SIDE, MIN_STEPS, RANDOM_SEED, SIDE_STEP)

from .media import VIDEO_KINDS, check_media_source, is_url

MAX_PROMPT_CHARS = MAX_HOSTED_PROMPT_CHARS  # the name the client's callers know
TEXT_LIMITS = {"prompt": MAX_HOSTED_PROMPT_CHARS, "negative_prompt": MAX_NEGATIVE_PROMPT_CHARS}
SHOWN_CHARS = 60  # a bad value is quoted in a message up to this length
# The hosted APIs' choices first, then the local extras (resolution: framepack_core.limits.HOSTED_RESOLUTION_CHOICES).
ASPECT_CHOICES = (*(a for a in ASPECT_RATIOS if a != AUTO), AUTO)
# Names the hosted APIs use for the same inputs (fal's first+last-frame API says image_url / end_image_url).
ALIASES = {"image_url": "image", "end_image_url": "end_image"}


class ValidationError(ValueError):
    """The parameters are not acceptable; ``problems`` holds one line per bad input (name, what is wrong, the fix)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid parameters:\n" + "\n".join(f"  - {p}" for p in self.problems))


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


def _shown(value: Any) -> str:
    """``value``'s repr for a message, cut to SHOWN_CHARS (a request's value may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("image", "image", "start image (required unless video or text_to_video): a local file or an http(s) "
              "URL", required=True),
    ParamSpec("end_image", "image", "end image (first+last-frame video): a local file or an http(s) URL"),
    ParamSpec("strength", "float", "how strongly the video ends on end_image (1 = exactly); only with end_image",
              DEFAULT_END_STRENGTH, 0, 1),
    ParamSpec("prompt", "str", f"what happens in the video (required, at most {MAX_PROMPT_CHARS} characters)",
              required=True),
    ParamSpec("negative_prompt", "str", f"what to avoid (used when cfg_scale > 1; at most {MAX_NEGATIVE_PROMPT_CHARS} "
              "characters)", ""),
    ParamSpec("aspect_ratio", "choice", "output shape; auto keeps the start image's", ASPECT_CHOICES[0],
              choices=ASPECT_CHOICES),
    ParamSpec("resolution", "choice", "output size; custom uses width and height", HOSTED_RESOLUTION_CHOICES[0],
              choices=HOSTED_RESOLUTION_CHOICES),
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
    ParamSpec("seed", "int", f"random seed; {RANDOM_SEED} picks one (the seed used is reported)", RANDOM_SEED,
              RANDOM_SEED, MAX_HOSTED_SEED),
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
        return f"{s.name} must be {want} {rng}, got {_shown(value)} (a boolean)"
    if s.kind == "int" and not isinstance(value, int):
        if isinstance(value, float):
            return f"{s.name} must be {want} {rng}, got {_shown(value)}; drop the fraction"
        return f"{s.name} must be {want} {rng}, got {_shown(value)} ({_type_word(value)})"
    if s.kind == "float":
        if not isinstance(value, (int, float)):
            return f"{s.name} must be {want} {rng}, got {_shown(value)} ({_type_word(value)})"
        if not math.isfinite(value):
            return f"{s.name} must be a finite number {rng}, got {_shown(value)}"
    if not s.low <= value <= s.high:
        return f"{s.name} {_shown(value)} is out of range; use a value {rng}"
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
    """One generation request in the hosted APIs' terms. Build it with :meth:`from_mapping`, which validates it:
    the one check on the way to the server (the workflow is filled and the job queued without checking again). A
    directly constructed instance can be checked with :meth:`problems` / :meth:`validate`.

    ``strength`` and ``num_frames`` are None when not given: :attr:`end_strength` and :attr:`frames` apply the
    hosted defaults (DEFAULT_END_STRENGTH; DEFAULT_FRAMES, or DEFAULT_FRAMES_WITH_END with an end image).
    """
    image: str | None
    prompt: str
    end_image: str | None = None
    strength: float | None = None
    negative_prompt: str = ""
    aspect_ratio: str = ASPECT_CHOICES[0]
    resolution: str = HOSTED_RESOLUTION_CHOICES[0]
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    num_inference_steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    cfg_scale: float = DEFAULT_CFG
    seed: int = RANDOM_SEED
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
        return DEFAULT_END_STRENGTH if self.strength is None else float(self.strength)

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
                problem = None if value in s.choices else f"{s.name} {_shown(value)} is not {s.range_text()}"
            elif s.kind == "bool":
                problem = None if isinstance(value, bool) else f"{s.name} must be true or false, got {_shown(value)}"
            else:
                problem = None if isinstance(value, str) else \
                    f"{s.name} must be text, got {_shown(value)} ({type(value).__name__})"
            if problem:
                out.append(problem)
        if isinstance(self.prompt, str):
            if not self.prompt.strip():
                out.append("prompt is empty; describe the motion, e.g. \"the girl turns her head and smiles\"")
        for name, limit in TEXT_LIMITS.items():
            text = getattr(self, name)
            if isinstance(text, str) and len(text) > limit:
                out.append(f"{name} has {len(text)} characters; the limit is {limit}: shorten it")
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

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> "HostedParams":
        """Parameters that :meth:`from_mapping` validated, as :meth:`to_dict` wrote them into a job record of ours,
        read back without checking them again (the files they name are checked again when read for upload)."""
        return cls(**{"image": None, "prompt": None, **data})

    def to_dict(self) -> dict[str, Any]:
        """The parameters (those not given, None, left out), e.g. for the job store; :meth:`from_record` reads it
        back."""
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
