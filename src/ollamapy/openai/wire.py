"""OpenAI's wire format: pydantic models for the request bodies we accept.

Fields of the wrong JSON type are rejected (a 400 naming the field) rather than coerced,
as with the native models; fields we do not support are ignored, because OpenAI clients
send many (`user`, `logit_bias`, `n`, ...) and Ollama ignores them too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


class OpenAIModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


Stop = StrictStr | list[StrictStr] | None
"""`stop` is a single sequence or a list of them."""


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: StrictStr


class ImageURL(OpenAIModel):
    url: StrictStr
    detail: StrictStr | None = None


class ImagePart(OpenAIModel):
    type: Literal["image_url"]
    image_url: StrictStr | ImageURL
    """Clients send either `{"url": ...}` (the API's form) or the bare URL string."""

    @property
    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(OpenAIModel):
    name: StrictStr
    arguments: StrictStr = ""
    """A JSON object, encoded as a string (OpenAI's convention; Ollama's is an object)."""


class ToolCall(OpenAIModel):
    function: FunctionCall
    id: StrictStr | None = None
    type: StrictStr = "function"


class ChatMessage(OpenAIModel):
    role: StrictStr
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_call_id: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning: StrictStr | None = None


class StreamOptions(OpenAIModel):
    include_usage: StrictBool = False


class JSONSchemaFormat(OpenAIModel):
    name: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(OpenAIModel):
    type: StrictStr
    json_schema: JSONSchemaFormat | None = None


class Reasoning(OpenAIModel):
    effort: StrictStr | None = None


class ChatCompletionRequest(OpenAIModel):
    model: StrictStr
    messages: list[ChatMessage]
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: Stop = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    reasoning_effort: StrictStr | None = None
    reasoning: Reasoning | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = None


class CompletionRequest(OpenAIModel):
    model: StrictStr
    prompt: StrictStr | list[StrictStr] = ""
    suffix: StrictStr | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: Stop = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    echo: StrictBool = False
    logprobs: int | None = None
    """The legacy API's switch and count in one: N returns each token's logprob with its
    N most likely alternatives (0-20 here, as `top_logprobs`)."""


EmbeddingInput = StrictStr | list[StrictStr] | list[int] | list[list[int]]


class EmbeddingRequest(OpenAIModel):
    model: StrictStr
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


def include_usage(options: StreamOptions | None) -> bool:
    """Whether a stream ends with a usage-only chunk (`stream_options.include_usage`)."""
    return options is not None and options.include_usage


__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "ContentPart",
    "EmbeddingRequest",
    "FunctionCall",
    "ImagePart",
    "ImageURL",
    "JSONSchemaFormat",
    "Reasoning",
    "ResponseFormat",
    "StreamOptions",
    "TextPart",
    "ToolCall",
    "include_usage",
]
