"""Anthropic error objects: `{"type": "error", "error": {"type": ..., "message": ...}}`.

Anthropic's SDKs pick their exception class from the HTTP status (400 ->
`BadRequestError`, 404 -> `NotFoundError`, 529 -> `OverloadedError`, ...); the error's
`type` names the same thing in the body, in Anthropic's vocabulary.
"""

from __future__ import annotations

from typing import Any

from ollamapy.errors import OllamaError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's `type` for a status; any other is a server-side `api_error`."""
    return _TYPES.get(status, "api_error")


def error_object(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception maps to: our own errors know theirs; the rest are 500s."""
    return exc.status_code if isinstance(exc, OllamaError) else 500


def error_for(exc: BaseException) -> dict[str, Any]:
    message = exc.message if isinstance(exc, OllamaError) else (str(exc) or type(exc).__name__)
    return error_object(status_of(exc), message)
