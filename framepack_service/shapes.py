"""What the two contracts' answers look like when something is wrong, and the pieces every route shares: the
request body as JSON, the service's base URL, a request body schema for the OpenAPI page."""

from __future__ import annotations

from typing import Any

from framepack_client.hosted import SPEC_BY_NAME

from .intake import BadRequest, Contract

WAVESPEED_PREFIX, FAL_PREFIX = "/api/v3/", "/fal-ai/"


def error_body(path: str, status: int, message: str, field: str | None = None) -> dict:
    """The error in the shape of the contract that ``path`` belongs to: WaveSpeed's envelope
    ``{code, message, data: null}``; fal's ``{detail: [{loc, msg, type}]}`` for a field, ``{detail: text}``
    otherwise (also used by the service's own endpoints)."""
    if path.startswith(WAVESPEED_PREFIX):
        return {"code": status, "message": message, "data": None}
    if field is not None and path.startswith(FAL_PREFIX):
        return {"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]}
    return {"detail": message}


def bad_request_body(path: str, err: BadRequest) -> tuple[int, dict]:
    """(status, body) for invalid input: 400 with every problem in one message (WaveSpeed), 422 with one entry
    per problem (fal, as its validation errors)."""
    if path.startswith(FAL_PREFIX):
        return 422, {"detail": [{"loc": ["body", name], "msg": message, "type": "value_error"}
                                for name, message in err.problems]}
    return 400, error_body(path, 400, "invalid request: " + "; ".join(m for _, m in err.problems))


def base_url(request, public_url: str | None) -> str:
    return (public_url or str(request.base_url)).rstrip("/")


_JSON_TYPES = {"int": "integer", "float": "number", "str": "string", "image": "string", "choice": "string",
               "bool": "boolean"}


def body_schema(contract: Contract) -> dict:
    """A JSON schema of the contract's request body, from the same parameter table the validation uses."""
    props = {}
    for name in contract.fields:
        spec = SPEC_BY_NAME[contract.hosted_name(name)]
        prop: dict[str, Any] = {"type": _JSON_TYPES[spec.kind], "description": spec.help}
        if name in contract.defaults:
            prop["default"] = contract.defaults[name]
        if spec.low is not None:
            prop["minimum"], prop["maximum"] = spec.low, spec.high
        if spec.choices:
            prop["enum"] = list(spec.choices)
        if spec.kind == "image":
            prop["description"] = "an http(s) URL or a data: URI of an image"
        props[name] = prop
    schema = {"type": "object", "properties": props, "required": list(contract.required),
              "additionalProperties": False}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
