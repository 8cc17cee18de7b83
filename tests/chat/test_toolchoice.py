"""`tool_choice`: the values accepted, and the call format each template family implies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ollamapy.chat.toolchoice import (
    ARGUMENTS_SLOT,
    NAME_SLOT,
    CallFormat,
    ToolChoice,
    call_format,
    call_schema,
    forced_tools,
    parse_tool_choice,
    shape_order,
)
from ollamapy.chat.tools import ToolCallParser
from ollamapy.errors import BadRequestError
from ollamapy.template import Template
from tests.conftest import CONFORMANCE, TESTDATA
from tests.fakes import TOOLS_TEMPLATE_TEXT, WEATHER

TIME: dict[str, Any] = {"type": "function", "function": {"name": "get_time"}}
TOOLS = [WEATHER, TIME]
NAMED = {"type": "function", "function": {"name": "get_time"}}


# ----------------------------------------------------------------------------- the choice


@pytest.mark.parametrize(
    ("value", "parallel", "choice"),
    [
        (None, None, ToolChoice("auto")),
        ("auto", None, ToolChoice("auto")),
        ("none", None, ToolChoice("none")),
        ("required", None, ToolChoice("required")),
        ("required", False, ToolChoice("required", parallel=False)),
        (NAMED, True, ToolChoice("function", "get_time")),
        ({"type": "function", "name": "get_time"}, None, ToolChoice("function", "get_time")),
    ],
)
def test_tool_choice_values(value: object, parallel: bool | None, choice: ToolChoice) -> None:
    assert parse_tool_choice(value, parallel, TOOLS) == choice


@pytest.mark.parametrize(
    ("value", "tools", "message"),
    [
        ("sometimes", TOOLS, "invalid tool_choice"),
        ("required", None, "needs at least one tool"),
        ({"type": "function", "function": {"name": "launch"}}, TOOLS, "'launch', which is not"),
        ({"type": "function", "function": {}}, TOOLS, "invalid tool_choice"),
        ({"type": "web_search"}, TOOLS, "invalid tool_choice"),
    ],
)
def test_bad_tool_choice_is_a_400(value: object, tools: Any, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        parse_tool_choice(value, None, tools)


def test_forced_choice_limits_and_tools() -> None:
    required, named = ToolChoice("required"), ToolChoice("function", "get_time", parallel=False)
    assert (required.forced, required.max_calls, forced_tools(required, TOOLS)) == (
        True,
        0,
        TOOLS,
    )
    assert (named.forced, named.max_calls, forced_tools(named, TOOLS)) == (True, 1, [TIME])
    assert not ToolChoice("auto").forced and not ToolChoice("none").forced


# ----------------------------------------------------------------------------- the call format

SHAPE = (("name", NAME_SLOT), ("arguments", ARGUMENTS_SLOT))


def family(name: str) -> Template:
    return Template.parse((TESTDATA / "tool_templates" / f"{name}.gotmpl").read_text(), name)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (family("qwen2.5"), CallFormat("<tool_call>\n", "\n", "\n</tool_call>", SHAPE)),
        (
            family("llama3.2"),
            CallFormat("", "\n", "", (("name", NAME_SLOT), ("parameters", ARGUMENTS_SLOT))),
        ),
        (family("mistral"), CallFormat("[TOOL_CALLS] [", "", "]", SHAPE)),
        (
            Template.parse((CONFORMANCE / "command-r.gotmpl").read_text(), "t"),
            CallFormat(
                "\nAction: ```json\n[\n    ",
                "\n    ",
                "\n]```",
                (("tool_name", NAME_SLOT), ("parameters", ARGUMENTS_SLOT)),
            ),
        ),
        (
            Template.parse(TOOLS_TEMPLATE_TEXT, "t"),
            CallFormat("<tool_call>", "", "</tool_call>", SHAPE),
        ),
        (Template.parse("{{ .Prompt }}", "t"), CallFormat()),
        (
            Template.parse(
                "{{ range .Messages }}{{ range .ToolCalls }}"
                '{"type": "function", "function": {"name": "{{ .Function.Name }}", '
                '"arguments": {{ .Function.Arguments }}}}{{ end }}{{ .Content }}{{ end }}',
                "t",
            ),
            CallFormat("", "", "", (("type", "function"), ("function", SHAPE))),
        ),
    ],
    ids=["qwen2.5", "llama3.2", "mistral", "command-r", "fakes", "no-tools", "openai-shape"],
)
def test_call_format_is_learned_from_the_template(template: Template, expected: CallFormat) -> None:
    assert call_format(template) == expected


@pytest.mark.parametrize("name", ["qwen2.5", "llama3.2", "mistral"])
def test_output_in_the_learned_format_parses_back(name: str) -> None:
    """What the grammar makes a model write is what the template's parser reads as calls."""
    fmt = call_format(family(name))
    assert fmt.separator is not None
    key = dict(fmt.shape)
    objects = [
        json.dumps(
            {k: ("get_weather" if v == NAME_SLOT else {"city": city}) for k, v in key.items()}
        )
        for city in ("Toronto", "Paris")
    ]
    output = fmt.prefix + fmt.separator.join(objects) + fmt.suffix
    parser = ToolCallParser.for_template(family(name), TOOLS)
    content, calls = parser.feed(output)
    tail, more = parser.finish()
    assert content + tail == ""
    assert [(c.name, dict(c.arguments)) for c in calls + more] == [
        ("get_weather", {"city": "Toronto"}),
        ("get_weather", {"city": "Paris"}),
    ]


# ----------------------------------------------------------------------------- the schema


def test_call_schema_pins_the_name_and_nests_the_parameters() -> None:
    assert call_schema(SHAPE, WEATHER) == {
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": WEATHER["function"]["parameters"],
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def test_a_tool_without_parameters_takes_any_object() -> None:
    assert call_schema(SHAPE, TIME)["properties"]["arguments"] == {"type": "object"}


def test_openai_shape_keeps_its_constants_and_order() -> None:
    shape = (("type", "function"), ("function", SHAPE))
    schema = call_schema(shape, TIME)
    assert schema["properties"]["type"] == {"const": "function"}
    assert schema["properties"]["function"]["properties"]["name"] == {"const": "get_time"}
    assert shape_order(shape) == ["type", "function", "name", "arguments"]


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {}}},
        "not a schema",
    ],
)
def test_parameters_the_grammar_cannot_enforce_are_a_400(parameters: object) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    with pytest.raises(BadRequestError, match="tool 'f'"):
        call_schema(SHAPE, tool)
