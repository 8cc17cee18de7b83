"""Tool-call parsing: the tag a template implies, and splitting streamed output into calls."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.chat.messages import ToolCall
from ollamapy.chat.tools import (
    ToolCallParser,
    calls_in,
    json_value_end,
    tool_call_tag,
    tool_names,
)
from ollamapy.template import Template
from tests.conftest import CONFORMANCE, TESTDATA

TOOLS = frozenset({"get_weather", "get_time"})
WEATHER = {"name": "get_weather", "arguments": {"city": "Toronto"}}

QWEN = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ if .Content }}{{ .Content }}{{- else if .ToolCalls }}<tool_call>\n"
    '{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", '
    '"arguments": {{ .Function.Arguments }}}\n'
    "{{ end }}</tool_call>{{ end }}<|im_end|>\n{{ end }}"
)
LLAMA31 = (
    "{{- range .Messages }}{{- if .ToolCalls }}{{ range .ToolCalls }}"
    '{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}'
    "{{ end }}{{ else }}{{ .Content }}{{ end }}{{ end }}"
)
MISTRAL = (
    "{{- range .Messages }}{{- if .ToolCalls }}[TOOL_CALLS] [{{- range .ToolCalls }}"
    '{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}'
    "{{- end }}]{{ end }}{{ end }}"
)


# ----------------------------------------------------------------------------- the tag


@pytest.mark.parametrize(
    ("template", "tag"),
    [
        ("", "{"),
        ("{{ .Prompt }}", "{"),
        ("{{if .ToolCalls}}{{end}}", "{"),
        ("{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"),
        ("{{if .ToolCalls}}```json\n{{end}}", "```json"),
        ("{{if .ToolCalls}}[{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["),
        ("{{if .ToolCalls}}\n [ {{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["),
        ("{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "{"),
        ("{{if .ToolCalls}} {{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"),
        ('{{if .ToolCalls}}{{range .ToolCalls}}\r\n{"name": 1}{{end}}{{end}}', "{"),
        ("{{if .ToolCalls}}<tool_call>{{end}}", "<tool_call>"),
        ('{{range .ToolCalls}}<tool_call>{"a": {{ . }}}</tool_call>{{end}}', "<tool_call>"),
        ("{{if .ToolCalls}}First{{if .X}}inner{{end}}Second{{end}}", "First"),
        ("{{if .ToolCalls}}[TOOL_CALL][{{end}}", "[TOOL_CALL]["),
        ("{{if .Content}}x{{else if .ToolCalls}}Action: {{end}}", "Action:"),
        ("{{if $.ToolCalls}}<tc>{{end}}", "<tc>"),
        (QWEN, "<tool_call>"),
        (LLAMA31, "{"),
        (MISTRAL, "[TOOL_CALLS] ["),
    ],
)
def test_tool_call_tag(template: str, tag: str) -> None:
    assert tool_call_tag(Template.parse(template, "t")) == tag


def test_tool_call_tag_of_command_r() -> None:
    path = CONFORMANCE / "command-r.gotmpl"
    template = Template.parse(path.read_text(), "t")
    assert tool_call_tag(template) == "Action: ```json\n["


# ----------------------------------------------------------------------------- JSON helpers


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("{}", 2),
        ('{"a": "}"} tail', 10),
        ('{"a": "\\"}"}', 12),
        ("[{}, [1]] x", 9),
        ('{"a": {', None),
        ("[", None),
    ],
)
def test_json_value_end(text: str, end: int | None) -> None:
    assert json_value_end(text) == end


@pytest.mark.parametrize(
    ("value", "calls"),
    [
        (WEATHER, [("get_weather", {"city": "Toronto"})]),
        ({"name": "get_time", "parameters": {"tz": "UTC"}}, [("get_time", {"tz": "UTC"})]),
        ({"name": "get_time"}, [("get_time", {})]),
        ({"name": "get_time", "arguments": '{"tz": "UTC"}'}, [("get_time", {"tz": "UTC"})]),
        ({"tool_name": "get_time", "parameters": {}}, [("get_time", {})]),
        ({"type": "function", "function": WEATHER}, [("get_weather", {"city": "Toronto"})]),
        ({"get_time": {"tz": "UTC"}}, [("get_time", {"tz": "UTC"})]),
        ([WEATHER, {"name": "get_time"}], [("get_weather", {"city": "Toronto"}), ("get_time", {})]),
        ({"name": "launch_rocket", "arguments": {}}, None),
        ({"name": "get_time", "arguments": "not json"}, None),
        ({"name": "get_time", "arguments": [1]}, None),
        ([WEATHER, {"city": "x"}], None),
        ([], None),
        ({"city": "Toronto"}, None),
        ("get_time", None),
        (None, None),
    ],
)
def test_calls_in(value: object, calls: list[tuple[str, dict[str, Any]]] | None) -> None:
    assert calls_in(value, TOOLS) == calls


def test_tool_names_reads_function_names() -> None:
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {}}},
        {"type": "function", "function": {"description": "nameless"}},
        {"type": "other"},
    ]
    assert tool_names(tools) == frozenset({"get_weather"})


# ----------------------------------------------------------------------------- the parser


def run(tag: str, chunks: list[str]) -> tuple[list[str], list[ToolCall]]:
    """Feed `chunks` then finish; return every non-empty content piece and every call."""
    parser = ToolCallParser(tag, TOOLS)
    content: list[str] = []
    calls: list[ToolCall] = []
    for chunk in chunks:
        text, found = parser.feed(chunk)
        content += [text] if text else []
        calls += found
    text, found = parser.finish()
    content += [text] if text else []
    return content, calls + found


def chars(text: str) -> list[str]:
    return list(text)


TORONTO = ToolCall("get_weather", {"city": "Toronto"}, index=0)
PARIS = ToolCall("get_weather", {"city": "Paris"}, index=1)
CALL = '{"name": "get_weather", "arguments": {"city": "Toronto"}}'
CALL2 = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


@pytest.mark.parametrize(
    ("tag", "chunks", "content", "calls"),
    [
        # prefix-style templates
        ("<tool_call>", [f"<tool_call>\n{CALL}\n</tool_call>"], "", [TORONTO]),
        ("<tool_call>", chars(f"<tool_call>\n{CALL}\n</tool_call>"), "", [TORONTO]),
        (
            "<tool_call>",
            [f"<tool_call>{CALL}</tool_call>\n<tool_call>{CALL2}</tool_call>"],
            "",
            [TORONTO, PARIS],
        ),
        ("[TOOL_CALLS] [", chars(f"[TOOL_CALLS] [{CALL}, {CALL2}]"), "", [TORONTO, PARIS]),
        ("Action: ```json\n[", [f"Action: ```json\n[\n{CALL}\n]```"], "", [TORONTO]),
        (
            "<tool_call>",
            ["Let me check. ", f"<tool_call>{CALL}</tool_call>"],
            "Let me check. ",
            [TORONTO],
        ),
        ("<tool_call>", ["Hello", " there"], "Hello there", []),
        ("<tool_call>", ["Hello <tool", "_c"], "Hello <tool_c", []),
        ("<tool_call>", ["a <tool", "box> b"], "a <toolbox> b", []),
        ("<tool_call>", ["<tool_call>not json at all"], "<tool_call>not json at all", []),
        ("<tool_call>", ['<tool_call>{"city": "Toronto"}'], '<tool_call>{"city": "Toronto"}', []),
        (
            "<tool_call>",
            ['<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>'],
            '<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>',
            [],
        ),
        (
            "<tool_call>",
            ['<tool_call>{"name": "get_weather", "argu'],
            '<tool_call>{"name": "get_weather", "argu',
            [],
        ),
        ("<tool_call>", ["<tool_call>x ", f"<tool_call>{CALL}"], "<tool_call>x ", [TORONTO]),
        # bare-JSON templates
        ("{", [CALL], "", [TORONTO]),
        ("{", chars(f"  \n{CALL}\n"), "", [TORONTO]),
        ("{", [f"[{CALL}, {CALL2}]"], "", [TORONTO, PARIS]),
        ("{", [f"{CALL}\n{CALL2}"], "", [TORONTO, PARIS]),
        ("{", ["Sure, ", CALL], f"Sure, {CALL}", []),
        ("{", ['{"city": "Toronto"} is a place'], '{"city": "Toronto"} is a place', []),
        ("{", ['{"name": "launch_rocket"}'], '{"name": "launch_rocket"}', []),
        ("{", [f"{CALL} and more"], " and more", [TORONTO]),
        ("{", ['{"name": "get_wea'], '{"name": "get_wea', []),
        ("{", ["  "], "  ", []),
        ("[", [f"[{CALL}]"], "", [TORONTO]),
        ("", [CALL], "", [TORONTO]),
    ],
)
def test_parser(tag: str, chunks: list[str], content: str, calls: list[ToolCall]) -> None:
    got_content, got_calls = run(tag, chunks)
    assert "".join(got_content) == content
    assert got_calls == calls


def test_arguments_as_json_string() -> None:
    chunk = '{"name": "get_weather", "arguments": "{\\"city\\": \\"Toronto\\"}"}'
    assert run("{", chars(chunk)) == ([], [TORONTO])


def test_integral_floats_become_ints_as_go_prints_them() -> None:
    _, calls = run("{", ['{"name": "get_time", "arguments": {"a": 3.0, "b": 2.5, "c": 7}}'])
    assert calls[0].arguments == {"a": 3, "b": 2.5, "c": 7}
    assert isinstance(calls[0].arguments["a"], int)


def test_content_streams_before_the_tag_without_waiting() -> None:
    parser = ToolCallParser("<tool_call>", TOOLS)
    assert parser.feed("Hi ") == ("Hi ", [])
    assert parser.feed("there <to") == ("there ", [])
    assert parser.feed("ol_call>{") == ("", [])
    assert parser.feed(CALL[1:]) == ("", [TORONTO])
    assert parser.finish() == ("", [])


def test_bare_prose_passes_straight_through() -> None:
    parser = ToolCallParser("{", TOOLS)
    assert parser.feed("Hello") == ("Hello", [])
    assert parser.feed(CALL) == (CALL, [])
    assert parser.finish() == ("", [])


def test_indices_count_across_the_response() -> None:
    parser = ToolCallParser("<tool_call>", TOOLS)
    _, first = parser.feed(f"<tool_call>{CALL}</tool_call>")
    _, second = parser.feed(f"<tool_call>{CALL2}</tool_call>")
    assert [c.index for c in first + second] == [0, 1]


def test_for_template_uses_the_template_tag_and_request_tools() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    parser = ToolCallParser.for_template(Template.parse(QWEN, "t"), tools)
    assert (parser.tag, parser.tools) == ("<tool_call>", frozenset({"get_weather"}))


# ----------------------------------------------------------------------------- template families

TOOL_TEMPLATES = TESTDATA / "tool_templates"
"""Faithful copies of the templates Ollama's library ships for these families."""


def family_parser(family: str, max_calls: int = 0) -> ToolCallParser:
    template = Template.parse((TOOL_TEMPLATES / f"{family}.gotmpl").read_text(), family)
    tools = [{"type": "function", "function": {"name": name}} for name in sorted(TOOLS)]
    return ToolCallParser.for_template(template, tools, max_calls)


def splits(text: str) -> list[list[str]]:
    """The text whole, a character at a time, and cut in two at every position."""
    return [[text], list(text)] + [[text[:i], text[i:]] for i in range(1, len(text))]


def run_parser(parser: ToolCallParser, chunks: list[str]) -> tuple[str, list[ToolCall]]:
    content, calls = "", list[ToolCall]()
    for chunk in chunks:
        text, found = parser.feed(chunk)
        content, calls = content + text, calls + found
    text, found = parser.finish()
    return content + text, calls + found


LLAMA_CALL = '{"name": "get_weather", "parameters": {"city": "Toronto"}}'
LLAMA_CALL2 = '{"name": "get_weather", "parameters": {"city": "Paris"}}'

FAMILY_CASES = [
    # Qwen 2.5 / Qwen 3 / Hermes: JSON inside <tool_call> tags
    ("qwen2.5", f"<tool_call>\n{CALL}\n</tool_call>", "", [TORONTO]),
    ("qwen2.5", f"<tool_call>\n{CALL}\n{CALL2}\n</tool_call>", "", [TORONTO, PARIS]),
    (
        "qwen2.5",
        f"<tool_call>\n{CALL}\n</tool_call>\n<tool_call>\n{CALL2}\n</tool_call>",
        "",
        [TORONTO, PARIS],
    ),
    ("qwen2.5", f"Checking.\n<tool_call>\n{CALL}\n</tool_call>", "Checking.\n", [TORONTO]),
    ("qwen2.5", "It is sunny in Toronto.", "It is sunny in Toronto.", []),
    (
        "qwen2.5",
        '<tool_call>\n{"name": "get_weather", "arg',
        '<tool_call>\n{"name": "get_weather", "arg',
        [],
    ),
    ("qwen2.5", "<tool_call>\n{oops}\n</tool_call>", "<tool_call>\n{oops}\n</tool_call>", []),
    # Llama 3.1 / 3.2: bare JSON with "parameters", maybe after <|python_tag|>
    ("llama3.2", LLAMA_CALL, "", [TORONTO]),
    ("llama3.2", f"<|python_tag|>{LLAMA_CALL}", "", [TORONTO]),
    ("llama3.2", f"\n\n{LLAMA_CALL}", "", [TORONTO]),
    ("llama3.2", f"{LLAMA_CALL}; {LLAMA_CALL2}", "", [TORONTO, PARIS]),
    ("llama3.2", f"{LLAMA_CALL}\n{LLAMA_CALL2}", "", [TORONTO, PARIS]),
    ("llama3.2", f"<|python_tag|>{LLAMA_CALL}<|python_tag|>{LLAMA_CALL2}", "", [TORONTO, PARIS]),
    ("llama3.2", f"[{LLAMA_CALL}, {LLAMA_CALL2}]", "", [TORONTO, PARIS]),
    ("llama3.2", "The weather is fine.", "The weather is fine.", []),
    ("llama3.2", '{"city": "Toronto"}', '{"city": "Toronto"}', []),
    ("llama3.2", "<|python_tag|>print(1)", "<|python_tag|>print(1)", []),
    # Mistral: [TOOL_CALLS] and a JSON array (with or without the space, or one object)
    ("mistral", f"[TOOL_CALLS] [{CALL}]", "", [TORONTO]),
    ("mistral", f"[TOOL_CALLS] [{CALL}, {CALL2}]", "", [TORONTO, PARIS]),
    ("mistral", f"[TOOL_CALLS][{CALL}{CALL2}]", "", [TORONTO, PARIS]),
    ("mistral", f"[TOOL_CALLS] {CALL}", "", [TORONTO]),
    ("mistral", "No tools needed [really].", "No tools needed [really].", []),
    ("mistral", "[TOOL_CALLS] [1, 2]", "[TOOL_CALLS] [1, 2]", []),
]


@pytest.mark.parametrize(
    ("family", "output", "content", "calls"),
    FAMILY_CASES,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(FAMILY_CASES)],
)
def test_family_output_parses_across_every_chunk_split(
    family: str, output: str, content: str, calls: list[ToolCall]
) -> None:
    for chunks in splits(output):
        assert run_parser(family_parser(family), chunks) == (content, calls), chunks


def test_each_call_is_emitted_as_soon_as_it_completes() -> None:
    parser = family_parser("mistral")
    assert parser.feed(f"[TOOL_CALLS] [{CALL}") == ("", [TORONTO])
    assert parser.feed(f", {CALL2}") == ("", [PARIS])
    assert parser.feed("]") == ("", [])
    assert parser.finish() == ("", [])


def test_max_calls_keeps_only_the_first_call() -> None:
    parser = family_parser("qwen2.5", max_calls=1)
    output = f"<tool_call>\n{CALL}\n{CALL2}\n</tool_call>"
    assert run_parser(parser, [output]) == ("", [TORONTO])


@pytest.mark.parametrize("depth", [10, 100_000])
def test_deeply_nested_json_is_content_never_an_error(depth: int) -> None:
    text = "[" * depth + "]" * depth
    assert run_parser(ToolCallParser("<tool_call>", TOOLS), [f"<tool_call>{text}"]) == (
        f"<tool_call>{text}",
        [],
    )


def test_a_bare_array_of_calls_is_emitted_call_by_call() -> None:
    parser = family_parser("llama3.2")
    assert parser.feed(f"[{LLAMA_CALL}, ") == ("", [TORONTO])
    assert parser.feed(f"{LLAMA_CALL2}]") == ("", [PARIS])
    assert parser.finish() == ("", [])


def test_tool_results_render_their_tool_name_and_call_id() -> None:
    from ollamapy.chat.messages import Message
    from ollamapy.chat.render import render

    template = Template.parse(
        '{{ range .Messages }}{{ if eq .Role "tool" }}'
        "[{{ .ToolName }} {{ .ToolCallID }}] {{ .Content }}{{ end }}{{ end }}",
        "t",
    )
    result = Message("tool", "22C", tool_name="get_weather", tool_call_id="call_1")
    assert render(template, [result]) == "[get_weather call_1] 22C"
