"""The default model's template (`scripts/templates/chatml-tools.gotmpl`): Ollama's chatml,
plus tools in Qwen/Hermes style. Without tools it must render byte for byte as chatml."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.chat.messages import Message, ToolCall
from ollamapy.chat.render import render
from ollamapy.chat.toolchoice import call_format
from ollamapy.chat.tools import tool_call_tag
from ollamapy.template import Template
from tests.conftest import CONFORMANCE

ROOT = Path(__file__).resolve().parents[2]
CHATML_TOOLS = Template.parse((ROOT / "scripts/templates/chatml-tools.gotmpl").read_text(), "t")
CHATML = Template.parse((CONFORMANCE / "chatml.gotmpl").read_text(), "t")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = ToolCall("get_weather", {"city": "Paris"}, "call_1")

CONVERSATIONS = {
    "one user turn": [Message("user", "Hi")],
    "system first": [Message("system", "Be brief."), Message("user", "Hi")],
    "multi turn": [
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Bye"),
    ],
    "empty content": [Message("user", "")],
    "assistant last": [Message("user", "Hi"), Message("assistant", "Hel")],
    "unicode and braces": [Message("user", "{{ .Content }} é ✓ <|im_end|>")],
}


@pytest.mark.parametrize("messages", CONVERSATIONS.values(), ids=CONVERSATIONS.keys())
def test_without_tools_it_renders_exactly_as_chatml(messages: list[Message]) -> None:
    assert render(CHATML_TOOLS, messages) == render(CHATML, messages)


def test_tools_go_in_a_system_turn_after_the_system_prompt() -> None:
    text = render(
        CHATML_TOOLS, [Message("system", "Be brief."), Message("user", "Hi")], tools=[WEATHER]
    )
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert '\n{"type": "function", "function": {"name":"get_weather",' in text
    assert text.count("<|im_start|>system") == 1
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_calls_and_results_render_in_hermes_style() -> None:
    messages = [
        Message("user", "Weather?"),
        Message("assistant", tool_calls=(CALL,)),
        Message("tool", '{"temp": 20}', tool_name="get_weather", tool_call_id="call_1"),
    ]
    text = render(CHATML_TOOLS, messages, tools=[WEATHER])
    assert (
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n"
    ) in text


def test_it_offers_tools_and_reads_calls_back() -> None:
    assert CHATML_TOOLS.uses("Tools")  # so /api/show lists the "tools" capability
    assert tool_call_tag(CHATML_TOOLS) == "<tool_call>"
    fmt = call_format(CHATML_TOOLS)
    assert (fmt.prefix, fmt.separator, fmt.suffix) == ("<tool_call>\n", "\n", "\n</tool_call>")
