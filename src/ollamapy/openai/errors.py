"""OpenAI error objects: `{"error": {"message", "type", "param", "code"}}`.

OpenAI's SDKs pick their exception class from the HTTP status alone (400 →
`BadRequestError`, 404 → `NotFoundError`, ...); the body's `type` is what their users
read, so it follows OpenAI's own names, as Ollama's compatibility layer does.
"""

from __future__ import annotations

from typing import Any

from ollamapy.errors import ModelNotFoundError, OllamaError

_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def error_type(status: int) -> str:
    """The `type` OpenAI uses for a status; anything we do not name is a server error."""
    return _TYPES.get(status, "api_error")


def error_object(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception maps to: our own errors know theirs; the rest are 500s."""
    return exc.status_code if isinstance(exc, OllamaError) else 500


def error_for(exc: BaseException) -> dict[str, Any]:
    """The error object for any exception, with `code` set where OpenAI has one."""
    message = exc.message if isinstance(exc, OllamaError) else (str(exc) or type(exc).__name__)
    code = "model_not_found" if isinstance(exc, ModelNotFoundError) else None
    return error_object(status_of(exc), message, code=code)
