"""Refusals (401, 403, 429) in the shape of the API the request was for.

The path decides: `/v1/messages...` is Anthropic's API (`{"type": "error", "error": {"type":
"authentication_error", ...}}`), any other `/v1/...` is OpenAI's (`{"error": {"message",
"type", "param", "code"}}`), everything else is Ollama's (`{"error": "..."}`). New routes
under those prefixes get the right shape without knowing about keys.
"""

from __future__ import annotations

import json
from typing import Any

_ANTHROPIC_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
_OPENAI_CODES = {
    401: "invalid_api_key",
    403: "insufficient_permissions",
    429: "rate_limit_exceeded",
}


def dialect_of(path: str) -> str:
    """`anthropic`, `openai` or `native`, from the request path."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    return "native"


def refusal_body(path: str, status: int, message: str) -> bytes:
    """The JSON body refusing a request to `path` with `status` (400, 401, 403 or 429)."""
    body: dict[str, Any]
    dialect = dialect_of(path)
    if dialect == "anthropic":
        body = {"type": "error", "error": {"type": _ANTHROPIC_TYPES[status], "message": message}}
    elif dialect == "openai":
        error = {
            "message": message,
            "type": _OPENAI_TYPES[status],
            "param": None,
            "code": _OPENAI_CODES.get(status),
        }
        body = {"error": error}
    else:
        body = {"error": message}
    return json.dumps(body).encode()
