"""gpt-oss's harmony output: channels as thinking, answer and a tool call, across chunk splits."""

from __future__ import annotations

import itertools

import pytest

from ollamapy.chat.harmony import HarmonyParser, Header, parse_header, uses_harmony
from ollamapy.chat.messages import Message, ToolCall

ANALYSIS = "<|channel|>analysis<|message|>User asks 2+2. Easy.<|end|>"
FINAL = "<|start|>assistant<|channel|>final<|message|>It is 4."
CALL = (
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city": "Paris"}'
)


@pytest.mark.parametrize(
    ("raw", "header"),
    [
        ("assistant", Header("assistant")),
        ("assistant<|channel|>analysis", Header("assistant", "analysis")),
        (
            "assistant<|channel|>commentary to=functions.f <|constrain|>json",
            Header("assistant", "commentary", "functions.f"),
        ),
        (
            "assistant to=functions.f<|channel|>commentary<|constrain|>json",
            Header("assistant", "commentary", "functions.f"),
        ),
        ("to=functions.f<|channel|>commentary", Header("tool", "commentary", "functions.f")),
        ("", Header()),
    ],
)
def test_headers(raw: str, header: Header) -> None:
    assert parse_header(raw) == header


def test_harmony_is_gpt_oss_with_harmony_markers() -> None:
    template = "{{ range .Messages }}<|start|>{{ .Role }}<|message|>{{ .Content }}<|end|>{{ end }}"
    assert uses_harmony("gptoss", template)
    assert uses_harmony("gpt-oss", template)
    assert not uses_harmony("llama", template)
    assert not uses_harmony("gptoss", "{{ .Prompt }}")


def parse(chunks: list[str], last: Message | None = None) -> tuple[str, str, list[ToolCall]]:
    parser = HarmonyParser(last)
    thinking, content = "", ""
    for chunk in chunks:
        t, c = parser.feed(chunk)
        thinking, content = thinking + t, content + c
    t, c, calls = parser.finish()
    return thinking + t, content + c, calls


CASES = [
    ("analysis then final", ANALYSIS + FINAL, ("User asks 2+2. Easy.", "It is 4.", [])),
    (
        "a rendered return token ends the answer",
        ANALYSIS + FINAL + "<|return|>",
        ("User asks 2+2. Easy.", "It is 4.", []),
    ),
    (
        "analysis then a call",
        ANALYSIS + CALL,
        ("User asks 2+2. Easy.", "", [ToolCall("get_weather", {"city": "Paris"})]),
    ),
    (
        "a call ended by <|call|>",
        CALL.removeprefix("<|start|>assistant") + "<|call|>",
        ("", "", [ToolCall("get_weather", {"city": "Paris"})]),
    ),
    ("reasoning that never ends", "<|channel|>analysis<|message|>Hmm <|en", ("Hmm <|en", "", [])),
    (
        "a preamble on commentary is content",
        "<|channel|>commentary<|message|>Let me check.",
        ("", "Let me check.", []),
    ),
    (
        "a call whose arguments are not JSON is content",
        CALL.replace('{"city": "Paris"}', "{city"),
        ("", "{city", []),
    ),
]


@pytest.mark.parametrize(("name", "output", "want"), CASES)
def test_every_two_and_three_way_split(
    name: str, output: str, want: tuple[str, str, list[ToolCall]]
) -> None:
    assert parse([output]) == want
    for i, j in itertools.combinations_with_replacement(range(len(output) + 1), 2):
        chunks = [output[:i], output[i:j], output[j:]]
        assert parse(chunks) == want, chunks


def test_the_trace_streams_as_it_comes() -> None:
    parser = HarmonyParser()
    assert parser.feed("<|channel|>analysis<|mess") == ("", "")
    assert parser.feed("age|>Think") == ("Think", "")
    assert parser.feed("ing<|e") == ("ing", "")
    assert parser.feed("nd|><|start|>assistant<|channel|>final<|message|>4") == ("", "4")


@pytest.mark.parametrize(
    ("last", "output", "want"),
    [
        (Message("assistant", "It is"), " 4.", ("", " 4.", [])),
        (Message("assistant", thinking="Hmm"), " more<|end|>", (" more", "", [])),
        (Message("user", "2+2?"), ANALYSIS + FINAL, ("User asks 2+2. Easy.", "It is 4.", [])),
    ],
    ids=["content", "thinking", "user"],
)
def test_a_partial_assistant_turn_is_continued(
    last: Message, output: str, want: tuple[str, str, list[ToolCall]]
) -> None:
    """Ollama's prefill: the output continues the last assistant message's channel."""
    assert parse([output], last) == want
