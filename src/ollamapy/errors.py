"""One exception tree for the whole project.

Every error knows the HTTP status it maps to, so a route handler can turn any of them into
Ollama's error body (`{"error": "..."}`) without a table of special cases, and the CLI can
print the message without a traceback.
"""

from __future__ import annotations


class OllamaError(Exception):
    """Base of every error the project raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadRequestError(OllamaError):
    """The request is malformed or names something invalid (HTTP 400)."""

    status_code = 400


class InvalidNameError(BadRequestError):
    """A model name breaks Ollama's naming rules."""


class InvalidDigestError(BadRequestError):
    """A digest is not `sha256:<64 hex>` (or `sha256-<64 hex>`)."""


class ModelfileError(BadRequestError):
    """A Modelfile could not be parsed; the message names the line."""


class GGUFError(BadRequestError):
    """A file is not a well-formed GGUF model."""


class TemplateError(BadRequestError):
    """A prompt template failed to parse or execute; the message names the position."""


class ForbiddenError(OllamaError):
    """The request came from an origin or host that is not allowed (HTTP 403)."""

    status_code = 403


class NotFoundError(OllamaError):
    """A model, blob or route does not exist (HTTP 404)."""

    status_code = 404


class ModelNotFoundError(NotFoundError):
    """No manifest exists for the model name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")
        self.name = name


class ServiceUnavailableError(OllamaError):
    """The server is too busy to take the request (HTTP 503)."""

    status_code = 503


class ClientGoneError(OllamaError):
    """The client disconnected before its answer was ready; the work for it was stopped.

    Nobody reads the reply; 499 is nginx's "client closed request"."""

    status_code = 499

    def __init__(self) -> None:
        super().__init__("client disconnected")


class RunnerError(OllamaError):
    """A runner process failed to load a model or died while serving it (HTTP 500)."""

    status_code = 500
