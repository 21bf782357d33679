"""What a refused request gets back: always JSON, `{"detail": "one line"}`, whatever refused it.

FastAPI's defaults answer a malformed body with one entry per failing item (784 bad pixels made a 41 KB answer),
say "Field required" without the field, "There was an error parsing the body" without the reason, and Starlette's
body limit answers 413 in plain text. `install` replaces all four: a validation error is summed up in one line
with at most MAX_LISTED_ERRORS items and the count, a missing field is named, an unreadable body says why, and
the body limit is a middleware of this module that answers in JSON and names the limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_LISTED_ERRORS = 3  # items of a validation error listed in the answer; the rest are counted


class FieldProblem(BaseModel):
    field: str = Field(description="Where in the request, e.g. `pixels.5` or `query.seed`; empty for the body.")
    message: str


class Problem(BaseModel):
    """What a refused request gets back (400, 404, 405, 413, 422)."""

    detail: str = Field(description="One line saying what is wrong, e.g. `z.3: Input should be a finite number`.")
    errors: list[FieldProblem] | None = Field(
        None, description=f"A malformed request (422): its first {MAX_LISTED_ERRORS} problems."
    )
    error_count: int | None = Field(None, description="A malformed request (422): how many problems it has.")


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Answer every refusal of `app` as a `Problem`, and refuse bodies over `max_body_bytes` with a 413."""
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


# --- validation errors ----------------------------------------------------------------------------------------------


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse(validation_problem(error.errors(), error.body), status_code=422)


def validation_problem(items: Sequence[dict[str, Any]], body: Any = None) -> dict[str, Any]:
    """Pydantic's error items → a `Problem`: a one-line detail of the first few and the count (no input is echoed
    back). `body` is the request body as FastAPI read it, for the line and column of a JSON syntax error."""
    listed, lines = [], []
    for item in items[:MAX_LISTED_ERRORS]:
        field, message = _location(item), _message(item, body)
        listed.append({"field": field, "message": message})
        names_its_field = not field or item["type"] == "missing"
        lines.append(message if names_its_field else f"{field}: {message}")
    detail = "; ".join(lines)
    if len(items) > len(listed):
        detail += f"; and {len(items) - len(listed)} more ({len(items)} errors in all)"
    return {"detail": detail, "errors": listed, "error_count": len(items)}


def _location(item: dict[str, Any]) -> str:
    """`("body", "pixels", 5)` → `pixels.5`; `("query", "seed")` → `query.seed`; the body itself → ``."""
    if item["type"] == "json_invalid":  # FastAPI puts the offset of the syntax error there, not a field
        return ""
    location = item["loc"][1:] if item["loc"][:1] == ("body",) else item["loc"]
    return ".".join(str(part) for part in location)


JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}


def _message(item: dict[str, Any], body: Any) -> str:
    kind, location, given = item["type"], _location(item), item.get("input")
    if kind == "json_invalid":
        return _json_syntax_message(item, body)
    if kind == "missing":
        return f"field '{location}' is required" if location else "the request needs a JSON object as its body"
    if not location and isinstance(given, bytes | bytearray):  # FastAPI did not parse it as JSON
        return "the body must be JSON, sent with the header Content-Type: application/json"
    if not location and type(given) in JSON_KINDS:
        return f"the body must be a JSON object, not {JSON_KINDS[type(given)]}"
    return item["msg"]


def _json_syntax_message(item: dict[str, Any], body: Any) -> str:
    """`the body is not valid JSON: Expecting value at line 1, column 1`."""
    reason = item.get("ctx", {}).get("error", "syntax error")
    offset = item["loc"][-1]
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    if not isinstance(body, str) or not isinstance(offset, int):
        return f"the body is not valid JSON: {reason}"
    line = body.count("\n", 0, offset) + 1
    column = offset - body.rfind("\n", 0, offset)
    return f"the body is not valid JSON: {reason} at line {line}, column {column}"


# --- other refusals -------------------------------------------------------------------------------------------------


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    # FastAPI answers a body it could not read with a bare 400 and keeps the reason as the exception's cause.
    if error.status_code == 400 and error.__cause__ is not None:
        return JSONResponse({"detail": unreadable_body_message(error.__cause__)}, status_code=400)
    return await http_exception_handler(request, error)


def unreadable_body_message(cause: BaseException) -> str:
    """Why a body FastAPI could not read was unreadable, in one line."""
    if isinstance(cause, UnicodeDecodeError):
        return (f"the body is not UTF-8 text (byte 0x{cause.object[cause.start]:02x} at offset {cause.start}); "
                "send JSON encoded as UTF-8")
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply to read"
    if isinstance(cause, json.JSONDecodeError):
        return f"the body is not valid JSON: {cause.msg} at line {cause.lineno}, column {cause.colno}"
    return f"the body could not be read ({type(cause).__name__}); send one JSON object"


def too_large_message(limit: int) -> str:
    return (f"the request body is larger than the limit of {limit:,} bytes ({limit / 1024:g} KiB, max_body_bytes in "
            "/api/info)")


class BodyLimit:
    """Refuses a request body over `limit` bytes with a JSON 413 that names the limit: from its Content-Length
    before anything is read, or, for a body sent without one, as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"detail": too_large_message(self.limit)}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # raised into the endpoint reading the body; `_http_error` answers it
                raise HTTPException(413, too_large_message(self.limit))
            return message

        await self.app(scope, receive_within_limit, send)
