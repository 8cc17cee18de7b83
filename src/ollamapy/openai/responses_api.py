"""The OpenAI Responses API (`/v1/responses`) as a native chat request: wire models and the
translation of a request's items onto `api.types.ChatRequest`.

A Responses conversation is a list of *items* (messages, `function_call`s, their
`function_call_output`s, `reasoning`), not chat messages; this module parses each item
into its typed model (a malformed one is a 400 naming its index), keeps them as
normalized JSON (what the response store saves, so a later `previous_response_id` turn
replays them exactly), and renders them as native messages. Pure: nothing here reads a
store or runs a model; `server/responses_routes.py` supplies the stored history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr, ValidationError

from ollamapy.api.types import ChatRequest, Message
from ollamapy.api.types import ToolCall as NativeToolCall
from ollamapy.errors import BadRequestError
from ollamapy.openai.requests import effort_think, image_data, sampling_options
from ollamapy.openai.wire import OpenAIModel

Json = dict[str, Any]

# ----------------------------------------------------------------------------- errors


class ResponsesRequestError(BadRequestError):
    """A 400 that names the request field at fault (OpenAI's `param`) and, where OpenAI
    has one, its error `code`."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


# ----------------------------------------------------------------------------- items


class InputText(OpenAIModel):
    type: Literal["input_text"]
    text: StrictStr


class OutputText(OpenAIModel):
    """An assistant's text, as a previous response wrote it (annotations are dropped)."""

    type: Literal["output_text"]
    text: StrictStr


class Refusal(OpenAIModel):
    type: Literal["refusal"]
    refusal: StrictStr


class InputImage(OpenAIModel):
    type: Literal["input_image"]
    image_url: StrictStr | None = None
    file_id: StrictStr | None = None
    detail: StrictStr | None = None


class InputFile(OpenAIModel):
    type: Literal["input_file"]


ContentPart = Annotated[
    InputText | OutputText | Refusal | InputImage | InputFile, Field(discriminator="type")
]

ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
"""Item roles as native roles: `developer` instructions are the system's."""


class MessageItem(OpenAIModel):
    type: Literal["message"] = "message"
    role: StrictStr
    content: StrictStr | list[ContentPart]
    id: StrictStr | None = None
    status: StrictStr | None = None


class FunctionCallItem(OpenAIModel):
    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr
    id: StrictStr | None = None
    status: StrictStr | None = None


class FunctionCallOutputItem(OpenAIModel):
    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr | list[ContentPart]
    id: StrictStr | None = None
    status: StrictStr | None = None


class CustomToolCallItem(OpenAIModel):
    """A call of a custom (freeform) tool: its `input` is plain text."""

    type: Literal["custom_tool_call"]
    call_id: StrictStr
    name: StrictStr
    input: StrictStr
    id: StrictStr | None = None


class CustomToolCallOutputItem(OpenAIModel):
    type: Literal["custom_tool_call_output"]
    call_id: StrictStr
    output: StrictStr | list[ContentPart]
    id: StrictStr | None = None


class SummaryText(OpenAIModel):
    type: Literal["summary_text"]
    text: StrictStr


class ReasoningText(OpenAIModel):
    type: Literal["reasoning_text"]
    text: StrictStr


class ReasoningItem(OpenAIModel):
    type: Literal["reasoning"]
    id: StrictStr | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: StrictStr | None = None
    status: StrictStr | None = None

    @property
    def text(self) -> str:
        """The trace: its full text where given, else its summary."""
        parts = self.content if self.content else self.summary
        return "".join(part.text for part in parts)


Item = (
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | CustomToolCallOutputItem
    | ReasoningItem
)
CallItem = FunctionCallItem | CustomToolCallItem
OutputItem = FunctionCallOutputItem | CustomToolCallOutputItem

_ITEM_MODELS: dict[str, type[Item]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
    "custom_tool_call": CustomToolCallItem,
    "custom_tool_call_output": CustomToolCallOutputItem,
    "reasoning": ReasoningItem,
}


def parse_items(raw: Sequence[Any], field: str = "input") -> list[Item]:
    """Each JSON item as its typed model; an item without `type` is a message (as the API
    allows). Anything else, or a malformed item, is a 400 naming it."""
    return [parse_item(item, f"{field}[{index}]") for index, item in enumerate(raw)]


def parse_item(raw: Any, where: str) -> Item:
    if not isinstance(raw, dict):
        raise ResponsesRequestError(f"{where}: an input item must be an object", param=where)
    kind = raw.get("type", "message")
    model = _ITEM_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ResponsesRequestError(f"{where}: unsupported input item type {kind!r}", param=where)
    try:
        item = model.model_validate(raw)
    except ValidationError as exc:
        raise ResponsesRequestError(f"{where}: {_first_error(exc)}", param=where) from None
    if isinstance(item, MessageItem) and item.role not in ROLES:
        raise ResponsesRequestError(
            f"{where}: invalid role {item.role!r} (expected user, system, developer or assistant)",
            param=f"{where}.role",
        )
    return item


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}" if location else str(error["msg"])


def dump_items(items: Sequence[Item]) -> list[Json]:
    """Items as the JSON the store keeps (and `parse_items` reads back)."""
    return [item.model_dump(mode="json", exclude_none=True) for item in items]


def request_items(input_: str | list[Any] | None) -> list[Item]:
    """The request's `input`: a string is one user message."""
    if input_ is None:
        return []
    if isinstance(input_, str):
        return [MessageItem(role="user", content=input_)]
    return parse_items(input_)


# ----------------------------------------------------------------------------- request


class Reasoning(OpenAIModel):
    effort: StrictStr | None = None
    summary: StrictStr | None = None


class TextFormat(OpenAIModel):
    type: StrictStr
    name: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None
    description: StrictStr | None = None


class TextConfig(OpenAIModel):
    format: TextFormat | None = None
    verbosity: StrictStr | None = None


class ResponsesRequest(OpenAIModel):
    """A `POST /v1/responses` body. Fields we do not act on (`user`, `include`,
    `service_tier`, `prompt_cache_key`, ...) are ignored, as OpenAI clients send many."""

    model: StrictStr
    input: StrictStr | list[Any] | None = None
    instructions: StrictStr | None = None
    tools: list[Any] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    stream: StrictBool = False
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    previous_response_id: StrictStr | None = None
    store: StrictBool = True
    truncation: Literal["auto", "disabled"] = "disabled"
    conversation: StrictStr | dict[str, Any] | None = None
    metadata: dict[str, StrictStr] | None = None


class ConversationRequest(OpenAIModel):
    """A `POST /v1/conversations` body: items to start from, and metadata."""

    items: list[Any] | None = None
    metadata: dict[str, StrictStr] | None = None


def check_request(request: ResponsesRequest) -> None:
    """What we refuse outright, before any item is read."""
    if request.conversation is not None and request.previous_response_id is not None:
        raise ResponsesRequestError(
            "previous_response_id and conversation cannot be used together",
            param="conversation",
        )
    conversation_id(request)
    if request.max_output_tokens is not None and request.max_output_tokens < 1:
        raise ResponsesRequestError(
            "max_output_tokens must be a positive integer", param="max_output_tokens"
        )


def conversation_id(request: ResponsesRequest) -> str | None:
    """`conversation` as its id: the id itself, or `{"id": ...}`."""
    conversation = request.conversation
    if conversation is None or isinstance(conversation, str):
        return conversation
    value = conversation.get("id")
    if not isinstance(value, str):
        raise ResponsesRequestError(
            'conversation must be an id or {"id": ...}', param="conversation"
        )
    return value


def to_chat_request(request: ResponsesRequest, items: Sequence[Item]) -> ChatRequest:
    """The native /api/chat request for a Responses request whose whole conversation
    (stored history, then this request's input) is `items`."""
    messages = to_messages(items, request.instructions)
    if not messages:
        raise ResponsesRequestError("input must not be empty", param="input")
    effort = request.reasoning.effort if request.reasoning is not None else None
    return ChatRequest(
        model=request.model,
        messages=messages,
        tools=native_tools(toolset(request.tools)),
        tool_choice=native_tool_choice(request.tool_choice),
        parallel_tool_calls=request.parallel_tool_calls,
        stream=request.stream,
        format=native_format(request.text),
        options=sampling_options(
            stop=None,
            max_tokens=request.max_output_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=None,
        ),
        think=effort_think(effort),
        keep_alive=None,
        truncate=request.truncation == "auto",
    )


# ----------------------------------------------------------------------------- messages


def to_messages(items: Sequence[Item], instructions: str | None) -> list[Message]:
    """Items as native messages. A reasoning item's trace rides on the assistant message
    that follows it; consecutive calls (`function_call`, `custom_tool_call`) join the
    assistant turn they belong to; an output names its tool through the call it answers."""
    messages: list[Message] = []
    if instructions:
        messages.append(Message(role="system", content=instructions))
    names = {item.call_id: item.name for item in items if isinstance(item, CallItem)}
    thinking = ""
    joinable = False  # whether the last message is an assistant turn a call may join
    for item in items:
        if isinstance(item, ReasoningItem):
            thinking += item.text
            continue
        if isinstance(item, CallItem):
            call = native_call(item)
            if joinable and not thinking:
                last = messages[-1]
                calls = [*(last.tool_calls or []), call]
                messages[-1] = last.model_copy(update={"tool_calls": calls})
            else:
                turn = Message(role="assistant", tool_calls=[call], thinking=thinking or None)
                messages.append(turn)
            thinking, joinable = "", True
            continue
        if isinstance(item, OutputItem):
            messages.append(
                Message(
                    role="tool",
                    content=output_text(item.output),
                    tool_name=names.get(item.call_id),
                    tool_call_id=item.call_id,
                )
            )
            joinable = False
            continue
        message = native_message(item)
        if message.role == "assistant":
            message = message.model_copy(update={"thinking": thinking or None})
            thinking = ""
        messages.append(message)
        joinable = message.role == "assistant"
    return messages


def native_message(item: MessageItem) -> Message:
    """One message item; its text parts joined by newlines, its images decoded."""
    role = ROLES[item.role]
    if isinstance(item.content, str):
        return Message(role=role, content=item.content)
    texts: list[str] = []
    images: list[str] = []
    for part in item.content:
        if isinstance(part, InputImage):
            images.append(image_payload(part))
        elif isinstance(part, InputFile):
            raise ResponsesRequestError("input_file parts are not supported", param="input")
        else:
            texts.append(part_text(part))
    return Message(role=role, content="\n".join(texts), images=images or None)


def part_text(part: InputText | OutputText | Refusal) -> str:
    return part.refusal if isinstance(part, Refusal) else part.text


def output_text(output: str | list[ContentPart]) -> str:
    """A tool's output; as parts, its text parts joined (images in tool output are not
    something a chat template can show)."""
    if isinstance(output, str):
        return output
    texts = []
    for part in output:
        if isinstance(part, InputImage | InputFile):
            raise ResponsesRequestError(
                "function_call_output supports text output only", param="input"
            )
        texts.append(part_text(part))
    return "\n".join(texts)


def image_payload(part: InputImage) -> str:
    if part.image_url is None:
        raise ResponsesRequestError(
            "input_image needs an image_url (a base64 data URL); file_id is not supported",
            param="input",
        )
    return image_data(part.image_url)


def native_call(item: CallItem) -> NativeToolCall:
    """A call as the native one; a custom call's text is its one argument, `input`."""
    if isinstance(item, CustomToolCallItem):
        args: dict[str, Any] = {CUSTOM_INPUT: item.input}
    else:
        args = arguments(item)
    return NativeToolCall.model_validate(
        {"id": item.call_id, "function": {"name": item.name, "arguments": args}}
    )


def arguments(item: FunctionCallItem) -> dict[str, Any]:
    """A call's arguments: OpenAI sends a JSON string, Ollama wants the object."""
    if not item.arguments.strip():
        return {}
    try:
        value = json.loads(item.arguments)
    except json.JSONDecodeError:
        raise ResponsesRequestError(
            f"function_call {item.call_id!r}: arguments are not JSON", param="input"
        ) from None
    if not isinstance(value, dict):
        raise ResponsesRequestError(
            f"function_call {item.call_id!r}: arguments are not a JSON object", param="input"
        )
    return value


# ----------------------------------------------------------------------------- tools


class FunctionTool(OpenAIModel):
    type: Literal["function"]
    name: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class CustomTool(OpenAIModel):
    """A freeform tool (Codex's `apply_patch`): the model writes its input as plain text,
    optionally in a grammar's syntax. Locally it is a function taking one string, `input`."""

    type: Literal["custom"]
    name: StrictStr
    description: StrictStr | None = None
    format: dict[str, Any] | None = None


Tool = FunctionTool | CustomTool

HOSTED_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "image_generation",
        "computer_use_preview",
        "local_shell",
        "mcp",
    }
)
"""Tools OpenAI runs on its side. Nothing here can run them, so they are left out of what
the model is offered (with a warning, and absent from the response's `tools`): agents such
as Codex declare some by default, and refusing them would refuse every request."""

CUSTOM_INPUT = "input"
_TOOL_MODELS: dict[str, type[Tool]] = {"function": FunctionTool, "custom": CustomTool}


@dataclass(frozen=True, slots=True)
class Toolset:
    """The request's tools as served: function and custom tools, and the hosted ones left
    out."""

    tools: tuple[Tool, ...] = ()
    left_out: tuple[str, ...] = ()

    @property
    def custom_names(self) -> frozenset[str]:
        return frozenset(tool.name for tool in self.tools if isinstance(tool, CustomTool))

    def echo(self) -> list[Json]:
        """The tools as the response object repeats them."""
        return [tool.model_dump(exclude_none=True) for tool in self.tools]


def toolset(tools: list[Any] | None) -> Toolset:
    """Parse the request's tools; an unknown type or a malformed tool is a 400 naming it."""
    served: list[Tool] = []
    left_out: list[str] = []
    for index, tool in enumerate(tools or ()):
        where = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in HOSTED_TOOLS:
            left_out.append(str(kind))
            continue
        model = _TOOL_MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise ResponsesRequestError(
                f"{where}: unsupported tool type {kind!r}; function and custom tools are supported",
                param=where,
            )
        try:
            served.append(model.model_validate(tool))
        except ValidationError as exc:
            raise ResponsesRequestError(f"{where}: {_first_error(exc)}", param=where) from None
    return Toolset(tuple(served), tuple(left_out))


def native_tools(tools: Toolset) -> list[Json] | None:
    """The served tools as the chat API's nested `function` objects."""
    return [native_tool(tool) for tool in tools.tools] or None


def native_tool(tool: Tool) -> Json:
    if isinstance(tool, FunctionTool):
        parameters = tool.parameters or {"type": "object", "properties": {}}
        description = tool.description or ""
    else:
        parameters = {
            "type": "object",
            "properties": {
                CUSTOM_INPUT: {"type": "string", "description": "The whole input, as text"}
            },
            "required": [CUSTOM_INPUT],
        }
        description = custom_description(tool)
    function = {"name": tool.name, "description": description, "parameters": parameters}
    return {"type": "function", "function": function}


def custom_description(tool: CustomTool) -> str:
    """A custom tool's description, with its input grammar when it has one, so the model
    sees the syntax it must write."""
    description = tool.description or ""
    fmt = tool.format or {}
    definition = fmt.get("definition")
    if fmt.get("type") == "grammar" and isinstance(definition, str):
        syntax = fmt.get("syntax", "grammar")
        description += f"\n\nThe input follows this {syntax} grammar:\n{definition}"
    return description


def native_tool_choice(choice: str | dict[str, Any] | None) -> str | Json | None:
    """`auto`/`none`/`required` as they are; `{"type": "function"|"custom", "name": ...}`
    as the chat API's `{"type": "function", "function": {"name": ...}}`."""
    if choice is None or isinstance(choice, str):
        return choice
    name = choice.get("name")
    if choice.get("type") not in ("function", "custom") or not isinstance(name, str):
        raise ResponsesRequestError(
            'tool_choice must be "none", "auto", "required" or {"type": "function", "name": ...}',
            param="tool_choice",
        )
    return {"type": "function", "function": {"name": name}}


def native_format(text: TextConfig | None) -> str | Json | None:
    """`text.format`: `json_object` is JSON mode, `json_schema` constrains to its schema."""
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema":
        return fmt.schema_ if fmt.schema_ is not None else "json"
    raise ResponsesRequestError(
        f"invalid text.format type {fmt.type!r}; expected text, json_object or json_schema",
        param="text.format.type",
    )
