"""OpenAI requests → native requests: the only place OpenAI's conventions meet Ollama's.

Every conversion here is pure and raises `BadRequestError` for input Ollama's OpenAI layer
rejects, so a route fails with a 400 before touching a model. Sampling defaults follow
Ollama's compatibility layer, not the native API: an absent `temperature` or `top_p` is
1.0 (OpenAI's default), which overrides the model's own parameters.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from typing import Any

from ollamapy.api.types import ChatRequest, EmbedRequest, GenerateRequest, Message
from ollamapy.api.types import ToolCall as NativeToolCall
from ollamapy.errors import BadRequestError
from ollamapy.openai.wire import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    ImagePart,
    ResponseFormat,
    TextPart,
    ToolCall,
)

OPENAI_TEMPERATURE = 1.0
OPENAI_TOP_P = 1.0

_IMAGE_PREFIXES = tuple(
    f"data:{mime};base64,"
    for mime in ("", "image/jpeg", "image/jpg", "image/png", "image/webp", "image/gif")
)
"""Data URLs Ollama accepts; a bare `data:;base64,` matches /api/chat's unadorned base64."""

_EFFORTS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}
"""OpenAI's efforts (and clients' extra tiers) as think values: Ollama clamps the ones past
either end of its scale to its nearest level rather than refusing them."""

Options = dict[str, Any]


# ----------------------------------------------------------------------------- chat


def to_chat_request(request: ChatCompletionRequest) -> ChatRequest:
    """The native /api/chat request an OpenAI chat completion request stands for."""
    if not request.messages:
        raise BadRequestError("messages must not be empty")
    return ChatRequest(
        model=request.model,
        messages=to_messages(request.messages),
        tools=request.tools,
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        stream=request.stream,
        format=to_format(request.response_format),
        options=chat_options(request),
        think=to_think(request),
        keep_alive=None,
        logprobs=bool(request.logprobs),
        top_logprobs=request.top_logprobs or 0,
    )


def chat_options(request: ChatCompletionRequest) -> Options:
    options = sampling_options(
        stop=request.stop,
        max_tokens=first_set(request.max_completion_tokens, request.max_tokens),
        temperature=request.temperature,
        top_p=request.top_p,
        seed=request.seed,
    )
    return options | penalties(request.frequency_penalty, request.presence_penalty)


def sampling_options(
    *,
    stop: str | list[str] | None,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
) -> Options:
    """Options both endpoints share; `max_tokens` becomes `num_predict`."""
    options: Options = {
        "temperature": OPENAI_TEMPERATURE if temperature is None else temperature,
        "top_p": OPENAI_TOP_P if top_p is None else top_p,
    }
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if seed is not None:
        options["seed"] = seed
    return options


def penalties(frequency: float | None, presence: float | None) -> Options:
    pairs = {"frequency_penalty": frequency, "presence_penalty": presence}
    return {key: value for key, value in pairs.items() if value is not None}


def first_set(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def to_format(response_format: ResponseFormat | None) -> str | dict[str, Any] | None:
    """`json_object` is JSON mode; `json_schema` constrains output to its schema."""
    if response_format is None:
        return None
    kind = response_format.type.strip().lower()
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = response_format.json_schema
        if schema is None or schema.schema_ is None:
            return "json"
        return schema.schema_
    raise BadRequestError(
        f"invalid response_format type: {response_format.type!r}; "
        "expected 'text', 'json_object' or 'json_schema'"
    )


def to_think(request: ChatCompletionRequest) -> bool | str | None:
    """`reasoning.effort` (else `reasoning_effort`) picks the thinking level; "none" turns it
    off; no effort leaves the model's default (a thinking model thinks)."""
    reasoning = request.reasoning
    return effort_think(reasoning.effort if reasoning is not None else request.reasoning_effort)


def effort_think(effort: str | None) -> bool | str | None:
    """A reasoning effort as the native `think` value (shared with /v1/responses)."""
    if not effort:
        return None
    if effort not in _EFFORTS:
        raise BadRequestError(
            f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", '
            '"high", "xhigh", "ultra", "max", or "none")'
        )
    return _EFFORTS[effort]


# ----------------------------------------------------------------------------- messages


def to_messages(messages: list[ChatMessage]) -> list[Message]:
    result: list[Message] = []
    for message in messages:
        result.extend(to_native_messages(message, tool_name_for(message, messages)))
    return result


def tool_name_for(message: ChatMessage, messages: list[ChatMessage]) -> str | None:
    """A tool result names its tool, directly or through the id of the call it answers."""
    if message.role.lower() != "tool":
        return None
    if message.name:
        return message.name
    if not message.tool_call_id:
        return None
    for candidate in reversed(messages):  # the last call with a duplicated id wins
        for call in candidate.tool_calls or ():
            if call.id == message.tool_call_id:
                return call.function.name
    return None


def to_native_messages(message: ChatMessage, tool_name: str | None) -> list[Message]:
    """One OpenAI message as native messages.

    A content-part array becomes one native message per part, as Ollama's layer does, so
    prompts render identically; tool calls and thinking ride on the last of them.
    """
    calls = to_native_tool_calls(message.tool_calls)
    content = message.content
    if content is None and message.tool_calls is None:
        raise BadRequestError(f"invalid content for a '{message.role}' message: null")
    if not isinstance(content, list) or not content:
        text = content if isinstance(content, str) else ""
        native = _native(message.role, text, None, calls, tool_name, message.reasoning)
        return [native.model_copy(update={"tool_call_id": message.tool_call_id})]
    parts = [part_message(message.role, part) for part in content]
    last = parts[-1]
    last = _native(last.role, last.content, last.images, calls, tool_name, message.reasoning)
    parts[-1] = last.model_copy(update={"tool_call_id": message.tool_call_id})
    return parts


def part_message(role: str, part: TextPart | ImagePart) -> Message:
    if isinstance(part, TextPart):
        return Message(role=role, content=part.text)
    return Message(role=role, content="", images=[image_data(part.url)])


def _native(
    role: str,
    content: str,
    images: list[str] | None,
    calls: list[NativeToolCall] | None,
    tool_name: str | None,
    thinking: str | None,
) -> Message:
    return Message(
        role=role,
        content=content,
        images=images,
        tool_calls=calls,
        tool_name=tool_name,
        thinking=thinking or None,
    )


def image_data(url: str) -> str:
    """The base64 payload of an image data URL, or of plain base64 (what /api/chat takes);
    remote URLs are not fetched (as in Ollama)."""
    prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None and (url.startswith(("data:", "http:", "https:")) or not url):
        raise BadRequestError("invalid image input: only base64 data URLs are supported")
    payload = url[len(prefix or "") :]
    try:
        b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("invalid image input: malformed base64") from None
    return payload


def to_native_tool_calls(calls: list[ToolCall] | None) -> list[NativeToolCall] | None:
    if not calls:
        return None
    return [
        NativeToolCall.model_validate(
            {"function": {"name": call.function.name, "arguments": tool_arguments(call)}}
            | ({"id": call.id} if call.id else {})
        )
        for call in calls
    ]


def tool_arguments(call: ToolCall) -> dict[str, Any]:
    """OpenAI encodes arguments as a JSON string; Ollama wants the object itself."""
    text = call.function.arguments
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise BadRequestError("invalid tool call arguments: not JSON") from None
    if not isinstance(value, dict):
        raise BadRequestError("invalid tool call arguments: not a JSON object")
    return value


# ----------------------------------------------------------------------------- completions


def to_generate_request(request: CompletionRequest) -> GenerateRequest:
    """The native /api/generate request an OpenAI completion request stands for."""
    options = sampling_options(
        stop=request.stop,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        seed=request.seed,
    )
    options["frequency_penalty"] = request.frequency_penalty or 0.0
    options["presence_penalty"] = request.presence_penalty or 0.0
    return GenerateRequest(
        model=request.model,
        prompt=prompt_text(request.prompt),
        suffix=request.suffix or None,
        stream=request.stream,
        options=options,
        keep_alive=None,
        logprobs=request.logprobs is not None,
        top_logprobs=request.logprobs or 0,
    )


def prompt_text(prompt: str | list[str]) -> str:
    """Ollama takes one prompt; a one-element list (what some SDKs send) is the same thing."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]
    raise BadRequestError("prompt must be a string or a list of exactly one string")


# ----------------------------------------------------------------------------- embeddings


def to_embed_request(request: EmbeddingRequest) -> EmbedRequest:
    """The native /api/embed request; `dimensions` is applied by the native path."""
    if request.dimensions is not None and request.dimensions <= 0:
        raise BadRequestError("dimensions must be a positive integer")
    if request.input == [] or request.input == [[]]:
        raise BadRequestError("invalid input: must not be empty")
    return EmbedRequest(
        model=request.model, input=request.input, dimensions=request.dimensions, keep_alive=None
    )
