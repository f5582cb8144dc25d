"""A request body as JSON, parsed in linear time and bounded memory, off the event loop (the routes run
:func:`parse_json` in a thread).

A request is one flat JSON object of a few fields. Before the parser sees a body, a scan made of C-speed byte
counts and one regular expression over at most a bounded number of strings refuses (400) a body with more strings,
arrays/objects or values than a request can have: a 20 MB array of zeros would cost the parser seconds and
hundreds of MB, and a deeply nested one its recursion (a 500 before). See SERVICE_MAX_JSON_* in
framepack_core.limits."""

from __future__ import annotations

import json
import re
from typing import Any

from framepack_core.limits import (MAX_HOSTED_PROMPT_CHARS, MAX_NEGATIVE_PROMPT_CHARS, SERVICE_MAX_JSON_CONTAINERS,
                                   SERVICE_MAX_JSON_VALUES)

from .intake import BadRequest

# a JSON string, escapes included (the unrolled form: no backtracking between alternatives)
STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# every value and key may be a string (2 quotes each), and each prompt character may be an escaped quote
MAX_QUOTES = 4 * SERVICE_MAX_JSON_VALUES + MAX_HOSTED_PROMPT_CHARS + MAX_NEGATIVE_PROMPT_CHARS


def _refuse(what: str) -> BadRequest:
    return BadRequest([("body", f"the request body has {what}; a request is one JSON object of the contract's "
                                "fields (numbers, text, true/false), without nested arrays or objects")])


def check_shape(raw: bytes) -> None:
    """BadRequest when ``raw`` has more strings, arrays/objects or values than a request can; linear time."""
    quotes = raw.count(b'"')
    if quotes > MAX_QUOTES:
        raise _refuse(f"{quotes} quote characters (at most {MAX_QUOTES})")
    skeleton = STRING.sub(b'""', raw)  # what is left outside strings: brackets, commas, numbers, literals
    containers = skeleton.count(b"{") + skeleton.count(b"[")
    if containers > SERVICE_MAX_JSON_CONTAINERS:
        raise _refuse(f"{containers} arrays or objects (at most {SERVICE_MAX_JSON_CONTAINERS}), nested or not")
    values = skeleton.count(b",") + 1
    if values > SERVICE_MAX_JSON_VALUES:
        raise _refuse(f"{values} values (at most {SERVICE_MAX_JSON_VALUES})")


def parse_json(raw: bytes) -> Any:
    """The body's JSON; BadRequest (400 / 422) when it is empty, not JSON, or not shaped like a request."""
    if not raw.strip():
        raise BadRequest([("body", "the request has no body; send the parameters as a JSON object "
                                   "(Content-Type: application/json)")])
    check_shape(raw)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise BadRequest([("body", f"the request body is not valid JSON ({str(err)[:200]})")]) from None
