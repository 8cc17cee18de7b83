"""Anthropic's Messages API wire format: pydantic models for the request bodies we accept.

As with the native and OpenAI models, a field of the wrong JSON type is a 400 naming the
field, and fields we do not use are ignored: Anthropic clients send `metadata`,
`cache_control` on blocks and tools, `service_tier`, beta fields and more, and a local
server has nothing to do with them (the KV prefix cache caches without being asked).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


class AnthropicModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# ----------------------------------------------------------------------------- content blocks


class TextBlock(AnthropicModel):
    type: Literal["text"]
    text: StrictStr


class Base64Source(AnthropicModel):
    type: Literal["base64"]
    media_type: StrictStr
    data: StrictStr


class URLSource(AnthropicModel):
    type: Literal["url"]
    url: StrictStr


class TextSource(AnthropicModel):
    type: Literal["text"]
    data: StrictStr
    media_type: StrictStr = "text/plain"


ImageSource = Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ImageBlock(AnthropicModel):
    type: Literal["image"]
    source: ImageSource


DocumentSource = Annotated[Base64Source | URLSource | TextSource, Field(discriminator="type")]


class DocumentBlock(AnthropicModel):
    """A document: a plain-text one is read as text; PDFs and URLs are refused (a 400)."""

    type: Literal["document"]
    source: DocumentSource
    title: StrictStr | None = None


class ToolUseBlock(AnthropicModel):
    type: Literal["tool_use"]
    id: StrictStr
    name: StrictStr
    input: dict[str, Any] = Field(default_factory=dict)


ToolResultPart = Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]


class ToolResultBlock(AnthropicModel):
    type: Literal["tool_result"]
    tool_use_id: StrictStr
    content: StrictStr | list[ToolResultPart] = ""
    is_error: StrictBool = False


class ThinkingBlock(AnthropicModel):
    type: Literal["thinking"]
    thinking: StrictStr
    signature: StrictStr = ""
    """Anthropic signs its traces; ours are unsigned (an empty signature), and any
    signature a client sends back is accepted unread."""


class RedactedThinkingBlock(AnthropicModel):
    """An encrypted trace from Anthropic's servers: nothing a local model can read."""

    type: Literal["redacted_thinking"]
    data: StrictStr = ""


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class MessageParam(AnthropicModel):
    role: Literal["user", "assistant"]
    content: StrictStr | list[ContentBlock]


# ----------------------------------------------------------------------------- tools


class Tool(AnthropicModel):
    """A client tool. Anthropic's own server tools (`web_search_...`, `bash_...`) carry a
    versioned `type` and no schema; the translation refuses them with a 400."""

    name: StrictStr
    description: StrictStr | None = None
    input_schema: dict[str, Any] | None = None
    type: StrictStr | None = None


class ToolChoice(AnthropicModel):
    type: Literal["auto", "any", "tool", "none"]
    name: StrictStr | None = None
    disable_parallel_tool_use: StrictBool | None = None


class ThinkingConfig(AnthropicModel):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class Metadata(AnthropicModel):
    user_id: StrictStr | None = None


# ----------------------------------------------------------------------------- requests


class CountTokensRequest(AnthropicModel):
    """`POST /v1/messages/count_tokens`: what a prompt is made of, nothing about sampling."""

    model: StrictStr
    messages: list[MessageParam]
    system: StrictStr | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    """`POST /v1/messages`."""

    max_tokens: int
    stream: StrictBool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[StrictStr] | None = None
    metadata: Metadata | None = None


__all__ = [
    "AnthropicModel",
    "Base64Source",
    "ContentBlock",
    "CountTokensRequest",
    "DocumentBlock",
    "ImageBlock",
    "MessageParam",
    "MessagesRequest",
    "Metadata",
    "RedactedThinkingBlock",
    "TextBlock",
    "TextSource",
    "ThinkingBlock",
    "ThinkingConfig",
    "Tool",
    "ToolChoice",
    "ToolResultBlock",
    "ToolUseBlock",
    "URLSource",
]
