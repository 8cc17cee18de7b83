"""Thinking: the tags a template implies, and splitting streamed output into trace and answer."""

from __future__ import annotations

import itertools

import pytest

from ollamapy.chat.messages import Message, ToolCall
from ollamapy.chat.render import render
from ollamapy.chat.thinking import (
    THINK_TAGS,
    ThinkingParser,
    ThinkingTags,
    thinking_tags,
    without_old_traces,
)
from ollamapy.template import Template
from tests.conftest import TESTDATA

THINK = ThinkingTags("<think>", "</think>")
QWEN3 = (TESTDATA / "qwen3.gotmpl").read_text()


# ----------------------------------------------------------------------------- the tags


@pytest.mark.parametrize(
    ("name", "template", "tags"),
    [
        ("no thinking field", "{{ range .Messages }}{{ .Content }}{{ end }}", None),
        ("think flag alone", "{{ if .Think }}/think{{ end }}{{ .Prompt }}", None),
        (
            "thinking outside the messages",
            "{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}",
            None,
        ),
        (
            "tags around the trace",
            "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
            "{{ .Content }}{{ end }}",
            THINK,
        ),
        (
            "whitespace trimmed from the tags",
            "{{ range $i, $_ := .Messages }}{{ if .Thinking }}\n  Some text before  "
            "{{ .Thinking }}   Some text after\n{{ end }}{{ end }}",
            ThinkingTags("Some text before", "Some text after"),
        ),
        (
            "the nearest range must be over .Messages",
            "{{ range $i, $_ := .Messages }}{{ range .NotMessages }}"
            "<think>{{ .Thinking }}</think>{{ end }}{{ end }}",
            None,
        ),
        (
            "only an opening text",
            "{{ range .Messages }}<think>{{ .Thinking }}{{ .Content }}{{ end }}",
            None,
        ),
        (
            "a parenthesized pipe is looked into",
            "{{ range .Messages }}<think>{{ (.Thinking) }}</think>{{ end }}",
            THINK,
        ),
        (
            "a chain on a pipe is not (as Go's walk)",
            "{{ range .Messages }}<think>{{ (.Thinking).Text }}</think>{{ end }}",
            None,
        ),
        ("qwen3", QWEN3, THINK),
        (
            "deepseek r1 style",
            '{{- range $i, $_ := .Messages }}{{- if eq .Role "assistant" }}<｜Assistant｜>'
            "{{- if and $.IsThinkSet .Thinking }}<think>\n{{ .Thinking }}\n</think>\n"
            "{{ end }}{{ .Content }}<｜end▁of▁sentence｜>{{ else }}<｜User｜>{{ .Content }}"
            "{{ end }}{{ end }}<｜Assistant｜>",
            THINK,
        ),
    ],
)
def test_thinking_tags_come_from_the_template(
    name: str, template: str, tags: ThinkingTags | None
) -> None:
    assert thinking_tags(Template.parse(template)) == tags


# ----------------------------------------------------------------------------- the parser


def parse(chunks: list[str], *, prompt: str = "") -> tuple[str, str]:
    """The whole (thinking, content) a stream of `chunks` yields, `finish` included."""
    parser = ThinkingParser.for_prompt(THINK, prompt)
    thinking, content = "", ""
    for chunk in chunks:
        t, c = parser.feed(chunk)
        thinking, content = thinking + t, content + c
    t, c = parser.finish()
    return thinking + t, content + c


CASES = [
    # name, model output, prompt, (thinking, content)
    ("trace then answer", "<think>Let me see.</think>It is 4.", "", ("Let me see.", "It is 4.")),
    (
        "whitespace after each tag dropped",
        "\n<think>\n\n  Hmm.\n</think>\n\n  Four.",
        "",
        ("Hmm.\n", "Four."),
    ),
    ("no trace: all answer, untouched", "  Four.\n", "", ("", "  Four.\n")),
    (
        "a tag later in the answer is content",
        "Use <think>tags</think>.",
        "",
        ("", "Use <think>tags</think>."),
    ),
    ("a trace that never closes", "<think>I wonder whether", "", ("I wonder whether", "")),
    ("an unclosed trace ending in half a tag", "<think>so </th", "", ("so </th", "")),
    ("an empty trace", "<think></think>Hi", "", ("", "Hi")),
    ("only whitespace", " \n ", "", ("", "")),
    ("half an opening tag at the end", "<thi", "", ("", "<thi")),
    ("a second closing tag is answer", "<think>a</think>b</think>c", "", ("a", "b</think>c")),
    ("a lookalike tag", "<thinking>x", "", ("", "<thinking>x")),
    (
        "the template opened the trace",
        "I should add.\n</think>\n\n4",
        "<|im_start|>assistant\n<think>\n",
        ("I should add.\n", "4"),
    ),
    (
        "opened by the template, never closed",
        "still going",
        "<|im_start|>assistant\n<think>",
        ("still going", ""),
    ),
    (
        "a prompt that closed an empty trace",
        "Four.",
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ("", "Four."),
    ),
]


@pytest.mark.parametrize(("name", "output", "prompt", "expected"), CASES)
def test_output_in_one_piece(
    name: str, output: str, prompt: str, expected: tuple[str, str]
) -> None:
    assert parse([output], prompt=prompt) == expected


@pytest.mark.parametrize(("name", "output", "prompt", "expected"), CASES)
def test_every_split_into_two_and_three_chunks_gives_the_same_result(
    name: str, output: str, prompt: str, expected: tuple[str, str]
) -> None:
    cuts = range(len(output) + 1)
    for i, j in itertools.combinations_with_replacement(cuts, 2):
        chunks = [output[:i], output[i:j], output[j:]]
        assert parse(chunks, prompt=prompt) == expected, chunks


@pytest.mark.parametrize(("name", "output", "prompt", "expected"), CASES)
def test_one_character_at_a_time(
    name: str, output: str, prompt: str, expected: tuple[str, str]
) -> None:
    assert parse(list(output), prompt=prompt) == expected


def test_the_trace_streams_as_it_comes() -> None:
    """Only what may be the start of the closing tag is held back."""
    parser = ThinkingParser(THINK)
    assert parser.feed("<thi") == ("", "")
    assert parser.feed("nk>First") == ("First", "")
    assert parser.feed(" thought</") == (" thought", "")
    assert parser.feed("b>") == ("</b>", "")
    assert parser.feed("</think") == ("", "")
    assert parser.thinking
    assert parser.feed(">\n") == ("", "")
    assert not parser.thinking
    assert parser.feed("\nAnswer") == ("", "Answer")
    assert parser.feed(" more") == ("", " more")
    assert parser.finish() == ("", "")


def test_go_whitespace_rules() -> None:
    """Ollama trims with Go's unicode.IsSpace: U+001F is not space there."""
    assert parse(["\x1f<think>a</think>b"]) == ("", "\x1f<think>a</think>b")
    assert parse(["\u3000<think>a</think>\xa0b"]) == ("a", "b")


# ----------------------------------------------------------------------------- Qwen 3's template


def qwen3(messages: list[Message], think: bool | str | None) -> str:
    return render(Template.parse(QWEN3), messages, think=think)


HISTORY = [
    Message("user", "2+2?"),
    Message("assistant", "4", thinking="Add them."),
    Message("user", "3+3?"),
]


@pytest.mark.parametrize(
    ("think", "tail"),
    [
        (True, "3+3? /think<|im_end|>\n<|im_start|>assistant\n"),
        ("high", "3+3? /think<|im_end|>\n<|im_start|>assistant\n"),
        (False, "3+3? /no_think<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        (None, "3+3?<|im_end|>\n<|im_start|>assistant\n"),
    ],
    ids=["on", "level", "off", "unset"],
)
def test_qwen3_renders_the_think_switch(think: bool | str | None, tail: str) -> None:
    """Qwen 3's soft switch: `/think` or `/no_think` on the last user turn; with thinking
    off the template closes an empty trace so the model answers at once."""
    prompt = qwen3(HISTORY, think)
    assert prompt.endswith(tail)
    assert "<think>Add them.</think>" not in prompt, "a trace before the last question is dropped"


def test_qwen3_renders_the_trace_of_the_current_turn() -> None:
    """An assistant turn after the last user message (a tool round) keeps its trace."""
    messages = [
        Message("user", "Weather?"),
        Message("assistant", thinking="Call the tool.", tool_calls=(ToolCall("weather", {}),)),
        Message("tool", "sunny", tool_name="weather"),
    ]
    prompt = qwen3(messages, True)
    assert prompt == (
        "<|im_start|>user\nWeather? /think<|im_end|>\n"
        "<|im_start|>assistant\n<think>Call the tool.</think>\n"
        '<tool_call>\n{"name": "weather", "arguments": {}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    tags = thinking_tags(Template.parse(QWEN3))
    assert tags is not None
    assert ThinkingParser.for_prompt(tags, prompt).feed(
        "<think>\nSunny.</think>\n\nIt is sunny."
    ) == (
        "Sunny.",
        "It is sunny.",
    )


def test_old_traces_are_cut_from_earlier_answers() -> None:
    """Ollama's filterThinkTags: answers before the last question lose their trace."""
    messages = [
        Message("user", "2+2?"),
        Message("assistant", "<think>\nAdd.</think>\n\n4"),
        Message("assistant", "Not <think>a trace</think>"),
        Message("user", "3+3?"),
        Message("assistant", "<think>Add again.</think>6"),
    ]
    kept = without_old_traces(messages, THINK_TAGS)
    assert [m.content for m in kept] == [
        "2+2?",
        "4",
        "Not <think>a trace</think>",
        "3+3?",
        "<think>Add again.</think>6",
    ]
