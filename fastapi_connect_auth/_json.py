"""Strict JSON: what the library parses off the wire, and request bodies validated into a route's model.

Python's `json` (and pydantic's parser) accept `NaN`, `Infinity` and numbers
such as `1e400`, which become `inf`: an expiry of `inf` never passes, a sum of
`nan` is never equal to anything. They also nest as deep as the recursion limit
allows. `loads` refuses all three, so a body or a key set off the network is
plain JSON, finite, and at most `MAX_JSON_DEPTH` levels deep, or a `ValueError`.

`validate_body` is how the dependencies turn a verified, capped body into the
route's model: parsed by `loads`, then validated as FastAPI validates a body
(`TypeAdapter.validate_python` on the parsed JSON), every failure a 422 that
never echoes the caller's input.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

__all__ = ["MAX_JSON_DEPTH", "loads", "validate_body"]

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects accepted: Atlassian's payloads use a handful of levels."""


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")
    return value


def _too_deep(document: Any, limit: int) -> bool:
    """Whether `document` nests arrays and objects more than `limit` levels deep (only containers are visited)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# One decoder for every call: `json.loads` with hooks builds a new decoder and scanner each time (a third of
# the cost of parsing a webhook's body).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse `raw` as strict JSON; `ValueError` (with a reason safe to show) for anything else.

    Refused: malformed JSON, `NaN`/`Infinity`, numbers out of the float range,
    integers of more digits than Python converts, and nesting deeper than `max_depth`.
    """
    try:
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")  # as json.loads
        document = _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(exc.msg) from None
    except (ValueError, TypeError) as exc:  # from the hooks, int() of too many digits, undecodable bytes
        raise ValueError(str(exc).partition(":")[0] or "not JSON") from None
    if isinstance(document, dict | list) and _too_deep(document, max_depth):
        raise ValueError(f"nested deeper than {max_depth} levels")
    return document


def validate_body(adapter: TypeAdapter[Any], raw: bytes) -> Any:
    """`raw` parsed by `loads` and validated by `adapter`; `RequestValidationError` (422) otherwise.

    The errors keep FastAPI's shape (`type`, `loc` under `body`, `msg`) without
    `input`: the caller's bytes are never echoed back, however large.
    """
    try:
        document = loads(raw)
    except ValueError as exc:
        error = {"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "ctx": {"error": str(exc)}}
        raise RequestValidationError([error]) from None
    try:
        return adapter.validate_python(document)
    except ValidationError as exc:
        errors = [
            {"type": error["type"], "loc": ("body", *error["loc"]), "msg": error["msg"]}
            for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None
