"""Ollama's native wire format: pydantic models for request bodies, shared by both ends.

The server validates every request with these models: a field of the wrong JSON type is a 400
with a message naming the field; unknown fields are ignored (clients send newer fields than we
know). The CLI's client builds its bodies from the same models (`WireModel.to_body`), so a field
declared here is one both sides know, as Ollama's `api/types.go` is for its server and client.
Responses are built as plain dicts by the routes, in Ollama's field order.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

Role = Literal["system", "user", "assistant", "tool"]


def _name_alias(data: Any) -> Any:
    """Older clients send `name` where today's send `model`; accept both."""
    if isinstance(data, dict) and "model" not in data and "name" in data:
        return {**data, "model": data["name"]}
    return data


class WireModel(BaseModel):
    """A request body. Python code builds one by field name (`from_=`, `debug_render_only=`);
    JSON spells those fields by alias (`from`, `_debug_render_only`), which `to_body` writes."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    def to_body(self) -> dict[str, Any]:
        """The JSON body a client sends: only the fields it set (an unset field takes the
        server's default, as Ollama's Go client omits empty ones), nulls left out, by alias."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)


KeepAlive = int | float | str | None
"""Seconds, a Go duration string, or absent (the model's or the server's default)."""


class ToolCallFunction(WireModel):
    name: StrictStr
    arguments: dict[str, Any] = Field(default_factory=dict)
    index: int | None = None


class ToolCall(WireModel):
    function: ToolCallFunction
    id: StrictStr | None = None


class Message(WireModel):
    role: StrictStr
    content: StrictStr = ""
    images: list[StrictStr] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: StrictStr | None = None
    tool_call_id: StrictStr | None = None
    thinking: StrictStr | None = None


class GenerateRequest(WireModel):
    model: StrictStr
    prompt: StrictStr = ""
    suffix: StrictStr | None = None
    system: StrictStr | None = None
    template: StrictStr | None = None
    context: list[int] | None = None
    stream: StrictBool = True
    raw: StrictBool = False
    format: StrictStr | dict[str, Any] | None = None
    images: list[StrictStr] | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: StrictBool | StrictStr | None = None
    debug_render_only: StrictBool = Field(default=False, alias="_debug_render_only")
    truncate: StrictBool | None = None
    """False: a prompt longer than num_ctx is a 400 instead of being cut (unset: true)."""
    shift: StrictBool | None = None
    """False: a generation that fills the context ends ("length") instead of shifting it."""
    logprobs: StrictBool = False
    top_logprobs: int = 0
    """With `logprobs`: the most likely alternatives per token, 0-20 (else a 400)."""


class ChatRequest(WireModel):
    model: StrictStr
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    """Our extension (Ollama ignores it): OpenAI's "none", "auto", "required" or
    `{"type": "function", "function": {"name": ...}}`; see `chat.toolchoice`."""
    parallel_tool_calls: StrictBool | None = None
    """Our extension: false allows at most one call per answer."""
    stream: StrictBool = True
    format: StrictStr | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None
    think: StrictBool | StrictStr | None = None
    debug_render_only: StrictBool = Field(default=False, alias="_debug_render_only")
    truncate: StrictBool | None = None
    """False: a conversation longer than num_ctx is a 400 instead of losing its oldest turns."""
    shift: StrictBool | None = None
    logprobs: StrictBool = False
    top_logprobs: int = 0


class CreateRequest(WireModel):
    """Both forms of /api/create: December 2024 (`modelfile`, `path`) and today's (`from`, ...)."""

    model: StrictStr
    modelfile: StrictStr | None = None
    path: StrictStr | None = None
    from_: StrictStr | None = Field(default=None, alias="from")
    files: dict[str, StrictStr] | None = None
    adapters: dict[str, StrictStr] | None = None
    template: StrictStr | None = None
    system: StrictStr | None = None
    license: StrictStr | list[StrictStr] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    quantize: StrictStr | None = None
    quantization: StrictStr | None = None
    renderer: StrictStr | None = None
    parser: StrictStr | None = None
    stream: StrictBool = True


class ShowRequest(WireModel):
    model: StrictStr
    system: StrictStr | None = None
    template: StrictStr | None = None
    options: dict[str, Any] | None = None
    verbose: StrictBool = False


class CopyRequest(WireModel):
    source: StrictStr
    destination: StrictStr


class DeleteRequest(WireModel):
    model: StrictStr


class EmbedRequest(WireModel):
    model: StrictStr
    input: Any = ""
    """A string or a list of strings. Typed loosely on purpose (as Ollama's `Input any`):
    the handler answers anything else, token ids included, with Ollama's own 400
    `invalid input type`, where a schema error would word it differently."""
    truncate: StrictBool = True
    dimensions: int | None = None
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class EmbeddingsRequest(WireModel):
    model: StrictStr
    prompt: StrictStr = ""
    options: dict[str, Any] | None = None
    keep_alive: KeepAlive = None


class PullRequest(WireModel):
    model: StrictStr
    insecure: StrictBool = False
    stream: StrictBool = True
    username: StrictStr | None = None
    password: StrictStr | None = None


PushRequest = PullRequest

NAME_ALIASED: tuple[type[WireModel], ...] = (
    GenerateRequest,
    ChatRequest,
    CreateRequest,
    ShowRequest,
    DeleteRequest,
    EmbedRequest,
    EmbeddingsRequest,
    PullRequest,
)


def accept_name_alias(model: type[WireModel], data: Any) -> Any:
    """Map the legacy `name` field to `model` for the requests that had it."""
    return _name_alias(data) if model in NAME_ALIASED else data


__all__ = [
    "ChatRequest",
    "CopyRequest",
    "CreateRequest",
    "DeleteRequest",
    "EmbedRequest",
    "EmbeddingsRequest",
    "GenerateRequest",
    "Message",
    "PullRequest",
    "PushRequest",
    "ShowRequest",
    "ToolCall",
    "WireModel",
    "accept_name_alias",
]
