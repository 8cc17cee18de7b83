"""`tool_choice`: which tools a chat may call, and the shape of output that must be calls.

Ollama ignores `tool_choice`; we honour OpenAI's values on `/v1` and the same field on
`/api/chat`. `"none"` hides the tools from the template; `"auto"` (the default) lets the model
decide; `"required"` and `{"type": "function", "function": {"name": ...}}` force a call, by
constraining decoding with a grammar. That grammar needs two things this module works out
from pure data: the template's call format, and one JSON schema per callable tool.

The call format is learned by rendering the template itself: an assistant turn with one call
(and with two), against the same turn with plain content. What differs is the text a model
writes to call a tool: the tag before the call's JSON object (`<tool_call>\\n`, `[TOOL_CALLS]
[`), the object's own keys (`"arguments"` or Llama's `"parameters"`, OpenAI's nested
`function`), the separator between two calls and the markup after the last. Every template
family Ollama supports is covered without a table of families, and the grammar asks for
exactly the text the template's tool-call parser (`chat.tools`) reads back.

The runner turns the resulting `ToolCallGrammar` into GBNF (its JSON-schema converter is
llama.cpp's); everything a client can get wrong is refused here first, as a 400.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ollamapy.chat.messages import Message, ToolCall
from ollamapy.chat.prompt import parse_template
from ollamapy.chat.render import render
from ollamapy.chat.tools import json_value_end
from ollamapy.errors import BadRequestError
from ollamapy.template import Template

Mode = Literal["auto", "none", "required", "function"]

NAME = "\u00a7name\u00a7"
"""Stand-ins rendered through the template, then found again in its output."""
ARG_KEY = "\u00a7key\u00a7"
ARG_VALUE = "\u00a7value\u00a7"
CONTENT = "\u00a7content\u00a7"
ARGUMENTS_SLOT = "\u00a7arguments\u00a7"
NAME_SLOT = "\u00a7tool\u00a7"

DEFAULT_SHAPE: tuple[tuple[str, str], ...] = (("name", NAME_SLOT), ("arguments", ARGUMENTS_SLOT))


@dataclass(frozen=True)
class ToolChoice:
    """A request's `tool_choice` (and `parallel_tool_calls`), checked against its tools."""

    mode: Mode = "auto"
    name: str = ""
    """The one function a `{"type": "function", ...}` choice forces."""
    parallel: bool = True
    """False (`parallel_tool_calls: false`): at most one call."""

    @property
    def forced(self) -> bool:
        """Whether the answer must be a call (decoding is constrained)."""
        return self.mode in ("required", "function")

    @property
    def max_calls(self) -> int:
        """The most calls an answer may hold; 0 for no limit."""
        return 0 if self.parallel else 1


def parse_tool_choice(
    value: object, parallel: bool | None, tools: Sequence[Mapping[str, Any]] | None
) -> ToolChoice:
    """`tool_choice` as OpenAI spells it, checked against the request's tools (400s)."""
    allow_many = parallel is not False
    if value is None or value == "auto":
        return ToolChoice("auto", parallel=allow_many)
    if value == "none":
        return ToolChoice("none", parallel=allow_many)
    names = [_function_name(tool) for tool in tools or ()]
    if value == "required":
        if not names:
            raise BadRequestError('tool_choice "required" needs at least one tool in tools')
        return ToolChoice("required", parallel=allow_many)
    if isinstance(value, Mapping):
        name = _chosen_name(value)
        if name not in names:
            raise BadRequestError(f"tool_choice names function {name!r}, which is not in tools")
        return ToolChoice("function", name, parallel=allow_many)
    raise BadRequestError(
        f'invalid tool_choice: {json.dumps(value)}; expected "none", "auto", "required" '
        'or {"type": "function", "function": {"name": ...}}'
    )


def _chosen_name(value: Mapping[str, Any]) -> str:
    function = value.get("function")
    name = function.get("name") if isinstance(function, Mapping) else value.get("name")
    if value.get("type", "function") != "function" or not isinstance(name, str) or not name:
        raise BadRequestError(
            'invalid tool_choice: expected {"type": "function", "function": {"name": ...}}'
        )
    return name


def _function_name(tool: Mapping[str, Any]) -> str:
    function = tool.get("function")
    return str(function.get("name") or "") if isinstance(function, Mapping) else ""


# ----------------------------------------------------------------------------- the call format


@dataclass(frozen=True)
class CallFormat:
    """How a template writes calls: `prefix`, call objects joined by `separator`, `suffix`.

    `shape` is one call object's keys in order, each value the literal it always has or one
    of the slots `NAME_SLOT` / `ARGUMENTS_SLOT` (nested objects are tuples of pairs too).
    `separator` None means the template renders only one call per answer.
    """

    prefix: str = ""
    separator: str | None = "\n"
    suffix: str = ""
    shape: tuple[tuple[str, object], ...] = DEFAULT_SHAPE


@functools.lru_cache(maxsize=64)
def call_format_of_text(text: str) -> CallFormat:
    """`call_format` of a template's text, learned once per template text."""
    return call_format(parse_template(text))


def call_format(template: Template) -> CallFormat:
    """The template's call format, learned by rendering it (the default: bare JSON objects)."""
    one = _call_section(template, 1)
    if one is None:
        return CallFormat()
    found = _call_object(one, 0)
    if found is None:
        return CallFormat()
    start, end, shape = found
    return CallFormat(one[:start], _separator(template, one[:start]), one[end:], shape)


def _separator(template: Template, prefix: str) -> str | None:
    two = _call_section(template, 2)
    first = _call_object(two, 0) if two is not None else None
    if two is None or first is None or not two.startswith(prefix):
        return None
    second = _call_object(two, first[1])
    return None if second is None else two[first[1] : second[0]]


def _call_section(template: Template, calls: int) -> str | None:
    """The text a template renders for an answer of `calls` calls, in place of content."""
    tool: dict[str, Any] = {"type": "function", "function": {"name": NAME, "parameters": {}}}
    call = ToolCall(NAME, {ARG_KEY: ARG_VALUE})
    with_calls = Message("assistant", tool_calls=(call,) * calls)
    with_content = Message("assistant", CONTENT)
    try:
        called = render(template, [Message("user", "hi"), with_calls], tools=[tool])
        plain = render(template, [Message("user", "hi"), with_content], tools=[tool])
    except Exception:  # a template that cannot render this turn: use the default format
        return None
    head = _common_prefix(called, plain)
    tail = _common_prefix(called[head:][::-1], plain[head:][::-1])
    section = called[head : len(called) - tail]
    return section if NAME in section else None


def _common_prefix(a: str, b: str) -> int:
    size = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        size += 1
    return size


def _call_object(text: str, after: int) -> tuple[int, int, tuple[tuple[str, object], ...]] | None:
    """The first JSON object at or after `after` that holds the stand-in call."""
    at = text.find("{", after)
    while at >= 0:
        end = json_value_end(text[at:])
        if end is not None:
            shape = _shape(_loads_object(text[at : at + end]))
            if shape is not None:
                return at, at + end, shape
        at = text.find("{", at + 1)
    return None


def _loads_object(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=tuple)
    except ValueError:
        return None


def _shape(value: object) -> tuple[tuple[str, object], ...] | None:
    """A rendered call object with the stand-ins replaced by slots; None if it is not one."""
    if not isinstance(value, tuple):
        return None
    pairs: list[tuple[str, object]] = []
    found: set[str] = set()  # which slots this object (or an object inside it) holds
    for key, item in value:
        if item == NAME:
            pairs.append((key, NAME_SLOT))
            found.add(NAME_SLOT)
        elif item == ((ARG_KEY, ARG_VALUE),):
            pairs.append((key, ARGUMENTS_SLOT))
            found.add(ARGUMENTS_SLOT)
        elif (inner := _shape(item)) is not None:
            pairs.append((key, inner))
            found |= {NAME_SLOT, ARGUMENTS_SLOT}
        else:
            pairs.append((key, item))
    return tuple(pairs) if found == {NAME_SLOT, ARGUMENTS_SLOT} else None


# ----------------------------------------------------------------------------- the schema


def call_schema(shape: tuple[tuple[str, object], ...], tool: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema of one call of `tool` in the template's shape (keys in order)."""
    function = tool.get("function") or {}
    parameters = function.get("parameters") or {"type": "object"}
    if not isinstance(parameters, Mapping):
        raise BadRequestError(f"tool {function.get('name')!r}: parameters must be a JSON schema")
    _check_supported(parameters, str(function.get("name")))
    properties: dict[str, Any] = {}
    for key, slot in shape:
        if slot == NAME_SLOT:
            properties[key] = {"const": function.get("name")}
        elif slot == ARGUMENTS_SLOT:
            properties[key] = dict(parameters)
        elif isinstance(slot, tuple):
            properties[key] = call_schema(slot, tool)
        else:
            properties[key] = {"const": slot}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _check_supported(schema: object, name: str) -> None:
    """Refuse what the grammar cannot express faithfully: references (the call schema nests
    the parameters, so `#/...` would point elsewhere) and non-JSON schema values."""
    if isinstance(schema, Mapping):
        if "$ref" in schema:
            raise BadRequestError(
                f"tool {name!r}: $ref in parameters is not supported with tool_choice"
            )
        for value in schema.values():
            _check_supported(value, name)
    elif isinstance(schema, list):
        for value in schema:
            _check_supported(value, name)


def shape_order(shape: tuple[tuple[str, object], ...]) -> list[str]:
    """The call object's keys in the order the template writes them (nested ones too)."""
    keys: list[str] = []
    for key, slot in shape:
        keys.append(key)
        if isinstance(slot, tuple):
            keys.extend(shape_order(slot))
    return keys


def forced_tools(choice: ToolChoice, tools: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The tools a forced choice may call: the named one, or all of them."""
    if choice.mode == "function":
        return [tool for tool in tools if _function_name(tool) == choice.name][:1]
    return [tool for tool in tools if _function_name(tool)]
