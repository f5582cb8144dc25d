"""A contract's request body -> a validated job, before anything reaches a server.

Each contract (WaveSpeed's ``wavespeed-ai/framepack``, fal's ``fal-ai/framepack`` and ``fal-ai/framepack/flf2v``)
names its fields, required fields and defaults; the values are checked with the client's hosted-parameter rules
(:class:`~framepack_client.hosted.HostedParams`), the images are fetched (URL or data: URI, see
framepack_client/fetch.py) and stored in the service's inputs folder under their content hash, and a random seed
(RANDOM_SEED, -1) is drawn here, once, so that a job sent again after a failure makes the same video.

Beyond the contracts the service also takes ``resolution: "custom"`` with ``width``/``height`` (multiples of 16),
``aspect_ratio: "auto"``, and on fal ``num_inference_steps`` (fal's pages do not list it; 25 by default).
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from framepack_core.limits import (DEFAULT_CFG, DEFAULT_END_STRENGTH, DEFAULT_FRAMES, DEFAULT_FRAMES_WITH_END,
                                   DEFAULT_GUIDANCE, DEFAULT_STEPS, MAX_HOSTED_SEED, RANDOM_SEED)

from framepack_client.fetch import FetchError, Resolver, UrlPolicy, load_image, short, system_resolver
from framepack_client.hosted import HostedParams, ValidationError
from framepack_client.jobs import now_iso
from framepack_client.workflow import API_WORKFLOWS_DIR

from . import backend
from .servers import describe_missing
from .store import JobRecord

LOCAL_EXTRAS = ("width", "height")
# serve --safety-checker: off (a request asking for it is refused: no video is called checked that was not),
# request (the request's enable_safety_checker decides, as on the hosted APIs), always (every video is checked)
SAFETY_OFF, SAFETY_REQUEST, SAFETY_ALWAYS = "off", "request", "always"
SAFETY_MODES = (SAFETY_OFF, SAFETY_REQUEST, SAFETY_ALWAYS)


@dataclass(frozen=True)
class Contract:
    kind: str  # "wavespeed" or "fal"
    endpoint: str  # the model id the contract names
    workflow: str  # shipped API workflow (workflows/api/<name>.json)
    fields: tuple[str, ...]  # accepted body keys, in the contract's names
    required: tuple[str, ...]
    defaults: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)  # contract field -> HostedParams field, for the images

    def hosted_name(self, name: str) -> str:
        return self.images.get(name, name)

    def contract_name(self, hosted: str) -> str:
        return next((k for k, v in self.images.items() if v == hosted), hosted)


# The contracts' defaults. The numbers are the hosted APIs' and the nodes' own (framepack_core.limits); the two
# contracts differ in their default resolution (WaveSpeed's page: 720p, fal's: 480p).
_DEFAULTS = {"negative_prompt": "", "aspect_ratio": "16:9", "seed": RANDOM_SEED,
             "num_inference_steps": DEFAULT_STEPS, "guidance_scale": DEFAULT_GUIDANCE, "enable_safety_checker": False}
WAVESPEED = Contract(
    "wavespeed", "wavespeed-ai/framepack", "framepack_i2v",
    fields=("image", "prompt", "negative_prompt", "aspect_ratio", "resolution", "seed", "num_inference_steps",
            "num_frames", "guidance_scale", "enable_safety_checker", *LOCAL_EXTRAS),
    required=("image", "prompt"),
    defaults={**_DEFAULTS, "resolution": "720p", "num_frames": DEFAULT_FRAMES},
    images={"image": "image"})
_FAL_COMMON = ("prompt", "negative_prompt", "image_url", "seed", "aspect_ratio", "resolution", "cfg_scale",
               "guidance_scale", "num_frames", "enable_safety_checker", "num_inference_steps", *LOCAL_EXTRAS)
_FAL_DEFAULTS = {**_DEFAULTS, "resolution": "480p", "cfg_scale": DEFAULT_CFG}
FAL_I2V = Contract("fal", "fal-ai/framepack", "framepack_i2v", fields=_FAL_COMMON, required=("prompt", "image_url"),
                   defaults={**_FAL_DEFAULTS, "num_frames": DEFAULT_FRAMES}, images={"image_url": "image"})
FAL_FLF2V = Contract("fal", "fal-ai/framepack/flf2v", "framepack_first_last_frame",
                     fields=(*_FAL_COMMON, "end_image_url", "strength"),
                     required=("prompt", "image_url", "end_image_url"),
                     defaults={**_FAL_DEFAULTS, "num_frames": DEFAULT_FRAMES_WITH_END,
                               "strength": DEFAULT_END_STRENGTH},
                     images={"image_url": "image", "end_image_url": "end_image"})


class BadRequest(ValueError):
    """The body cannot become a job; ``problems`` is [(field, message naming the field and the fix)]."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


@dataclass(frozen=True)
class IntakeSettings:
    inputs_dir: Path
    policy: UrlPolicy
    workflow_dir: Path | None = None  # <name>.json here replaces the shipped workflow of that name
    model_file: str | None = None  # replaces the workflows' model file
    resolver: Resolver = system_resolver
    safety_checker: str = SAFETY_REQUEST
    pool: Any = None  # servers.ServerPool: a job no server can run is refused here (None: not checked)


def workflow_path(name: str, workflow_dir: Path | None) -> str:
    if workflow_dir is not None and (Path(workflow_dir) / f"{name}.json").is_file():
        return str(Path(workflow_dir) / f"{name}.json")
    return str(API_WORKFLOWS_DIR / f"{name}.json")


def _problem_field(line: str, contract: Contract) -> tuple[str, str]:
    """(contract field, message in the contract's names) for one HostedParams problem line."""
    first = line.split(" ", 1)[0].rstrip(":,")
    name = contract.contract_name(first)
    if name != first:
        line = name + line[len(first):]
    return (name if name in contract.fields else "body"), line


def reencoded_png(data: bytes) -> bytes:
    """The image (already checked by fetch.check_image: kind, header size, decodes) decoded and written again as
    PNG: only its pixels are kept, never bytes appended after it or metadata. An animated image keeps its first
    frame."""
    from PIL import Image  # the service extra

    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        image.load()
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
        out = io.BytesIO()
        image.save(out, "PNG")
    return out.getvalue()


def _store_image(data: bytes, inputs_dir: Path) -> str:
    data = reencoded_png(data)
    inputs_dir.mkdir(parents=True, exist_ok=True)
    path = inputs_dir / f"{hashlib.sha256(data).hexdigest()}.png"
    if path.exists():
        os.utime(path)  # used again now: the retention sweep keeps a recently used input
    else:
        tmp = path.with_name(f".{uuid.uuid4().hex}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def check_body(contract: Contract, body: Any, safety: str = SAFETY_REQUEST) -> dict[str, Any]:
    """The body in HostedParams names with the contract's defaults, images still as given; BadRequest lists
    every problem that can be seen without fetching anything."""
    return _checked(contract, body, safety)[0]


def _checked(contract: Contract, body: Any, safety: str = SAFETY_REQUEST) -> tuple[dict[str, Any], HostedParams]:
    """(:func:`check_body`'s values, the same as validated parameters): the one validation of a request."""
    if not isinstance(body, dict):
        raise BadRequest([("body", f"the request body must be a JSON object with the fields "
                                   f"{', '.join(contract.fields)}")])
    problems = [(key, f"unknown parameter {key!r}; {contract.endpoint} takes {', '.join(contract.fields)}")
                for key in body if key not in contract.fields]
    problems += [(name, f"{name} is required") for name in contract.required if body.get(name) in (None, "")]
    # an explicit null means "not given": the default applies
    values = {**contract.defaults, **{k: v for k, v in body.items() if k in contract.fields and v is not None}}
    if safety == SAFETY_ALWAYS:
        values["enable_safety_checker"] = True  # the operator's rule: a request cannot turn it off
    elif safety == SAFETY_OFF and body.get("enable_safety_checker") is True:
        problems.append(("enable_safety_checker", "enable_safety_checker: this service does not run the safety "
                                                  "checker, so no video it makes is checked; leave "
                                                  "enable_safety_checker out or set it to false"))
    if "strength" not in body and not values.get("end_image_url"):
        values.pop("strength", None)  # its default belongs to the end image; without one it is only noise
    mapped = {contract.hosted_name(k): v for k, v in values.items()}
    try:
        # images must be URLs or data: URIs: a body never names a file of the service's machine
        params = HostedParams.from_mapping(mapped, local_files=False)
    except ValidationError as err:
        seen = {name for name, _ in problems}
        problems += [p for p in (_problem_field(line, contract) for line in err.problems) if p[0] not in seen]
    if problems:
        raise BadRequest(problems)
    return mapped, params


def intake(contract: Contract, body: Any, settings: IntakeSettings) -> JobRecord:
    """A new job (not yet stored) for ``body``; BadRequest when it cannot be one. Fetches the images.

    The parameters are validated once, here; the images when they are fetched (fetch.load_image). The job record
    holds them as validated (:meth:`HostedParams.to_dict`), and the scheduler reads them back without checking them
    again (:meth:`HostedParams.from_record`)."""
    values, params = _checked(contract, body, settings.safety_checker)
    workflow = workflow_path(contract.workflow, settings.workflow_dir)
    if settings.pool is not None:
        missing = settings.pool.missing_files(backend.needed_files(workflow, settings.model_file,
                                                                   bool(params.enable_safety_checker)))
        if missing:
            raise BadRequest([("body", describe_missing(missing))])
    stored = {}
    for field_name, hosted in contract.images.items():
        source = values.get(hosted)
        if not source:
            continue
        try:
            data, _kind = load_image(source, settings.policy, settings.resolver)
        except FetchError as err:
            shown = "a data: URI" if source[:5].lower() == "data:" else short(source)
            raise BadRequest([(field_name, f"{field_name} {shown}: {err}")]) from err
        stored[hosted] = _store_image(data, settings.inputs_dir)
    params = replace(params, **stored)  # the images as files of the service: what the scheduler uploads
    seed = params.seed if params.seed != RANDOM_SEED else secrets.randbelow(MAX_HOSTED_SEED + 1)
    return JobRecord(id=uuid.uuid4().hex, contract=contract.kind, endpoint=contract.endpoint, params=params.to_dict(),
                     seed=seed, workflow=workflow, model_file=backend.workflow_model(workflow, settings.model_file),
                     created_at=now_iso())
