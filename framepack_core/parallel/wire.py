"""What travels between the parent and its worker processes: jobs, results and the group's spec, as plain data.

Inside ComfyUI the pack's modules are named after its folder, while a worker imports framepack_core as a top-level
package, so pickling the core's classes directly would name modules the other side cannot import. Dataclasses
and enums of a fixed list are written as {"__type__": name, ...} and rebuilt from the receiver's own classes;
tensors and Python builtins are pickled as they are. A name outside the list is refused.
"""

from __future__ import annotations

import dataclasses
import pickle
from enum import Enum

import torch

from ..conditioning import ImageConditioning, Keyframe, TextConditioning
from ..generate import GenerationRequest, GenerationResult
from ..limits import Mode
from ..planning import Section, SectionPlan
from ..starts import Continuation
from .spec import GroupSpec, ModelSpec

_TYPES = {cls.__name__: cls for cls in (
    GenerationRequest, GenerationResult, ImageConditioning, Keyframe, TextConditioning, Continuation, Section,
    SectionPlan, ModelSpec, GroupSpec, Mode)}
TYPE_KEY = "__type__"


def to_wire(value):
    if isinstance(value, Enum):
        return {TYPE_KEY: type(value).__name__, "value": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__name__ not in _TYPES:
            raise TypeError(f"{type(value).__name__} cannot be sent to a parallel worker")
        fields = {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TYPE_KEY: type(value).__name__, **fields}
    if isinstance(value, (list, tuple)):
        return type(value)(to_wire(v) for v in value)
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"{type(value).__name__} cannot be sent to a parallel worker")


def from_wire(value):
    if isinstance(value, dict) and TYPE_KEY in value:
        cls = _TYPES.get(value[TYPE_KEY])
        if cls is None:
            raise TypeError(f"unknown type {value[TYPE_KEY]!r} from a parallel worker")
        if issubclass(cls, Enum):
            return cls(value["value"])
        return cls(**{k: from_wire(v) for k, v in value.items() if k != TYPE_KEY})
    if isinstance(value, (list, tuple)):
        return type(value)(from_wire(v) for v in value)
    if isinstance(value, dict):
        return {k: from_wire(v) for k, v in value.items()}
    return value


def send(conn, message: tuple) -> None:
    conn.send_bytes(pickle.dumps(to_wire(message), protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn) -> tuple:
    return from_wire(pickle.loads(conn.recv_bytes()))  # noqa: S301 - a socket between this group's own processes
