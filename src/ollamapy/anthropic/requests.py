"""Anthropic Messages requests -> native `/api/chat` requests: where the two conventions meet.

Every conversion is pure and raises `BadRequestError` (a 400 `invalid_request_error`) for
input we cannot serve, so a route fails before touching a model. Conventions:

- `system` (a string, or text blocks joined by blank lines) is one leading system message.
- A message's blocks become one native message (text blocks joined by blank lines, images
  on its `images`, `tool_use` blocks its `tool_calls`, a `thinking` block its `thinking`);
  `tool_result` blocks become native `tool` messages placed before the user's own text (a
  tool result answers the assistant turn just before it), each naming its tool through the
  id of the `tool_use` it answers.
- Sampling fields are set only when given: otherwise the model's own parameters apply.
  `max_tokens` is `num_predict`, `stop_sequences` is `stop`.
- `tool_choice` maps onto the native one (`any` is "required", `tool` names a function),
  which grammar-constrains forced calls; `thinking` maps onto `think`.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Any

from ollamapy.anthropic.wire import (
    ContentBlock,
    CountTokensRequest,
    DocumentBlock,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    Tool,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)
from ollamapy.api.types import ChatRequest, Message, ToolCall, ToolCallFunction
from ollamapy.errors import BadRequestError

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
"""The media types Anthropic accepts for base64 images."""

BLOCK_SEPARATOR = "\n\n"

Options = dict[str, Any]


def to_chat_request(request: CountTokensRequest) -> ChatRequest:
    """The native chat request an Anthropic request stands for. A `CountTokensRequest`
    (no sampling fields) gives the same conversation, tools and think value, hence the
    same prompt, as the `MessagesRequest` it counts."""
    if not request.messages:
        raise BadRequestError("messages: at least one message is required")
    think = to_think(request)
    forced = request.tool_choice is not None and request.tool_choice.type in ("any", "tool")
    if think and forced:  # the grammar would forbid the trace; Anthropic refuses it too
        raise BadRequestError("thinking may not be enabled when tool_choice forces tool use")
    return ChatRequest(
        model=request.model,
        messages=[*system_messages(request.system), *to_messages(request.messages)],
        tools=to_tools(request.tools),
        tool_choice=to_tool_choice(request.tool_choice, request.tools),
        parallel_tool_calls=parallel_calls(request.tool_choice),
        stream=request.stream if isinstance(request, MessagesRequest) else False,
        options=options_of(request) if isinstance(request, MessagesRequest) else None,
        think=think,
        keep_alive=None,
    )


def options_of(request: MessagesRequest) -> Options:
    """The native options of the sampling fields a request sets (and `max_tokens`)."""
    if request.max_tokens < 1:
        raise BadRequestError("max_tokens: must be at least 1")
    options: Options = {"num_predict": request.max_tokens}
    given = {"temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k}
    options |= {key: value for key, value in given.items() if value is not None}
    if request.stop_sequences:
        options["stop"] = list(request.stop_sequences)
    return options


def to_think(request: CountTokensRequest) -> bool | None:
    """`thinking.type`: enabled (or adaptive) thinks, disabled does not; absent leaves the
    model's default (a thinking model thinks)."""
    thinking = request.thinking
    if thinking is None:
        return None
    if thinking.type == "disabled":
        return False
    if thinking.budget_tokens is not None and thinking.budget_tokens < 1:
        raise BadRequestError("thinking.budget_tokens: must be at least 1")
    return True


def thinking_budget(request: CountTokensRequest) -> int | None:
    """The most tokens the reasoning trace may take (`thinking.budget_tokens`), if set."""
    thinking = request.thinking
    if thinking is None or thinking.type == "disabled":
        return None
    return thinking.budget_tokens


# ----------------------------------------------------------------------------- system


def system_messages(system: str | list[TextBlock] | None) -> list[Message]:
    if system is None:
        return []
    text = system if isinstance(system, str) else BLOCK_SEPARATOR.join(b.text for b in system)
    return [Message(role="system", content=text)] if text else []


# ----------------------------------------------------------------------------- messages


def to_messages(messages: list[MessageParam]) -> list[Message]:
    names = tool_names(messages)
    result: list[Message] = []
    for message in messages:
        result.extend(to_native(message, names))
    return result


def tool_names(messages: list[MessageParam]) -> dict[str, str]:
    """Each `tool_use` id to its tool's name: a native tool message names its tool."""
    return {
        block.id: block.name
        for message in messages
        if not isinstance(message.content, str)
        for block in message.content
        if isinstance(block, ToolUseBlock)
    }


def to_native(message: MessageParam, names: dict[str, str]) -> list[Message]:
    """One Anthropic message as native messages: its tool results, then the message."""
    if isinstance(message.content, str):
        return [Message(role=message.role, content=message.content)]
    texts: list[str] = []
    images: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[str] = []
    results: list[Message] = []
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            results.append(tool_result(block, names, message.role))
        elif isinstance(block, ToolUseBlock):
            calls.append(tool_call(block, message.role))
        elif isinstance(block, ThinkingBlock):
            thinking.append(block.thinking)
        elif isinstance(block, ImageBlock):
            images.append(image_data(block))
        else:
            texts.extend(block_text(block))
    if not (texts or images or calls or thinking):
        return results
    native = Message(
        role=message.role,
        content=BLOCK_SEPARATOR.join(texts),
        images=images or None,
        tool_calls=calls or None,
        thinking=BLOCK_SEPARATOR.join(thinking) or None,
    )
    return [*results, native]


def block_text(block: ContentBlock) -> list[str]:
    """The text a text or document block contributes (a redacted trace: none)."""
    if isinstance(block, TextBlock):
        return [block.text]
    if isinstance(block, DocumentBlock):
        return [document_text(block)]
    return []


def document_text(block: DocumentBlock) -> str:
    if block.source.type != "text":
        raise BadRequestError(
            f"document blocks with a {block.source.type} source are not supported; "
            "send the document as text"
        )
    title = f"{block.title}\n\n" if block.title else ""
    return title + block.source.data


def tool_call(block: ToolUseBlock, role: str) -> ToolCall:
    if role != "assistant":
        raise BadRequestError("tool_use blocks may only appear in assistant messages")
    return ToolCall(function=ToolCallFunction(name=block.name, arguments=block.input), id=block.id)


def tool_result(block: ToolResultBlock, names: dict[str, str], role: str) -> Message:
    """A native `tool` message; an error result says so, since the template cannot."""
    if role != "user":
        raise BadRequestError("tool_result blocks may only appear in user messages")
    if isinstance(block.content, str):
        text, images = block.content, []
    else:
        text = BLOCK_SEPARATOR.join(t for part in block.content for t in block_text(part))
        images = [image_data(part) for part in block.content if isinstance(part, ImageBlock)]
    if block.is_error:
        text = f"Error: {text}"
    return Message(
        role="tool",
        content=text,
        images=images or None,
        tool_name=names.get(block.tool_use_id),
        tool_call_id=block.tool_use_id,
    )


def image_data(block: ImageBlock) -> str:
    """The base64 payload of an image block; URLs are not fetched (as in Ollama)."""
    source = block.source
    if source.type != "base64":
        raise BadRequestError("image URLs are not supported; send images as base64")
    if source.media_type not in IMAGE_TYPES:
        raise BadRequestError(
            f"image media_type {source.media_type!r} is not supported "
            f"(expected one of {', '.join(IMAGE_TYPES)})"
        )
    try:
        b64decode(source.data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("invalid image data: malformed base64") from None
    return source.data


# ----------------------------------------------------------------------------- tools


def to_tools(tools: list[Tool] | None) -> list[dict[str, Any]] | None:
    """Anthropic tools as native (OpenAI-style) function tools."""
    if not tools:
        return None
    return [function_tool(tool) for tool in tools]


def function_tool(tool: Tool) -> dict[str, Any]:
    if tool.type not in (None, "custom") or tool.input_schema is None:
        kind = tool.type or "without input_schema"
        raise BadRequestError(
            f"tool {tool.name!r}: {kind} tools are not supported; "
            "define it as a custom tool with an input_schema"
        )
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = tool.input_schema
    return {"type": "function", "function": function}


def to_tool_choice(
    choice: ToolChoice | None, tools: list[Tool] | None
) -> str | dict[str, Any] | None:
    """`auto` / `any` / `tool` / `none` as the native (OpenAI-spelled) tool_choice."""
    if choice is None:
        return None
    if choice.type != "tool":
        if choice.type == "any" and not tools:
            raise BadRequestError('tool_choice "any" needs at least one tool in tools')
        return {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    if not choice.name:
        raise BadRequestError('tool_choice: type "tool" needs the name of a tool')
    if choice.name not in {tool.name for tool in tools or ()}:
        raise BadRequestError(f"tool_choice names tool {choice.name!r}, which is not in tools")
    return {"type": "function", "function": {"name": choice.name}}


def parallel_calls(choice: ToolChoice | None) -> bool | None:
    """`disable_parallel_tool_use` allows at most one call per answer."""
    if choice is None or choice.disable_parallel_tool_use is None:
        return None
    return not choice.disable_parallel_tool_use
