"""The conversation as the chat layer sees it: one `Message` type and one `ToolCall` type.

Every dialect (native, OpenAI, Anthropic, Responses) converts its wire messages into these
values once, at the edge; templates, truncation and the output parsers work on them only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ollamapy.api.types import Message as WireMessage
from ollamapy.errors import BadRequestError
from ollamapy.types.images import probe_image

Think = bool | str | None
"""A request's `think`: unset, on/off, or a level such as "high"."""

ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call: made by an earlier assistant message, or found in the output.

    `index` counts the calls of one response (Ollama's `function.index`); `id` is the
    call's id (`call_...`), empty until the edge gives it one.
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message, as /api/chat carries it (images are raw bytes)."""

    role: str
    content: str = ""
    images: tuple[bytes, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str = ""
    thinking: str = ""
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class Prompt:
    """The rendered prompt and the images it references as `[img-N]` (N = list index).

    `tokens` holds the prompt's tokens when they had to be counted to fit `num_ctx`, so
    the runner evaluates them without tokenizing the text again; None when the text
    fits by its byte length alone and was never tokenized.
    """

    text: str
    images: list[bytes] = field(default_factory=list)
    tokens: list[int] | None = None


def decode_image(text: str) -> bytes:
    """A base64 image as bytes; anything else, or bytes that are not an image we serve
    (`types.images.probe_image`: format, size, integrity), is a 400."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("invalid image data: images must be base64-encoded") from None
    probe_image(data)
    return data


def from_wire(message: WireMessage | Mapping[str, Any]) -> Message:
    """A native wire message (or a Modelfile MESSAGE's plain mapping) as a `Message`."""
    if isinstance(message, Mapping):
        return Message(str(message.get("role", "")), str(message.get("content", "")))
    return Message(
        role=message.role,
        content=message.content,
        images=tuple(decode_image(i) for i in message.images or ()),
        tool_calls=tuple(
            ToolCall(call.function.name, call.function.arguments, call.id or "", index)
            for index, call in enumerate(message.tool_calls or ())
        ),
        tool_name=message.tool_name or "",
        thinking=message.thinking or "",
        tool_call_id=message.tool_call_id or "",
    )


def check_roles(messages: list[WireMessage]) -> None:
    """Ollama's 400 for a role it does not know."""
    for message in messages:
        if message.role not in ROLES:
            raise BadRequestError(f"invalid role: {message.role!r}")
