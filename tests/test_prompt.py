"""Messages -> prompt: Ollama's two template styles, collation, truncation, generate."""

from __future__ import annotations

import pytest

from ollamapy.prompt import (
    Message,
    ToolCall,
    build_chat_prompt,
    build_generate_prompt,
    collate,
    render,
    with_model_system,
)
from ollamapy.template import Template

CHAT = Template.parse("{{ range .Messages }}<{{ .Role }}>{{ .Content }} {{ end }}<assistant>")
LEGACY = Template.parse(
    "{{ if .System }}[S]{{ .System }} {{ end }}[U]{{ .Prompt }} [A]{{ .Response }}</s> "
)
FIM = Template.parse(
    "{{ if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{ else }}{{ .Prompt }}{{ end }}"
)


def words(text: str) -> int:
    """Fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def sys(text: str) -> Message:
    return Message("system", text)


def user(text: str) -> Message:
    return Message("user", text)


def bot(text: str) -> Message:
    return Message("assistant", text)


RENDER_CASES = [
    ("chat", CHAT, [user("hi")], "<user>hi <assistant>"),
    ("chat system inside", CHAT, [sys("be"), user("hi")], "<system>be <user>hi <assistant>"),
    ("chat merges same role", CHAT, [user("a"), user("b")], "<user>a\n\nb <assistant>"),
    ("legacy one turn", LEGACY, [user("hi")], "[U]hi [A]"),
    ("legacy system", LEGACY, [sys("be"), user("hi")], "[S]be [U]hi [A]"),
    ("legacy turns", LEGACY, [user("q1"), bot("a1"), user("q2")], "[U]q1 [A]a1</s> [U]q2 [A]"),
    (
        "legacy system mid-way",
        LEGACY,
        [user("q1"), bot("a1"), sys("new"), user("q2")],
        "[U]q1 [A]a1</s> [S]new [U]q2 [A]",
    ),
    ("legacy ends on assistant", LEGACY, [user("q1"), bot("a1")], "[U]q1 [A]a1"),
]


@pytest.mark.parametrize(
    ("template", "messages", "want"),
    [c[1:] for c in RENDER_CASES],
    ids=[c[0] for c in RENDER_CASES],
)
def test_render(template: Template, messages: list[Message], want: str) -> None:
    assert render(template, messages) == want


def test_collate_joins_system_and_keeps_tool_messages_apart() -> None:
    system, msgs = collate([sys("a"), sys("b"), Message("tool", "1"), Message("tool", "2")])
    assert system == "a\n\nb"
    assert [m.content for m in msgs] == ["a\n\nb", "1", "2"]


def test_system_variable_alongside_messages() -> None:
    template = Template.parse("{{ .System }}|{{ len .Messages }}")
    assert render(template, [sys("s1"), user("u"), sys("s2")]) == "s1\n\ns2|3"


def test_tools_and_tool_calls_reach_the_template() -> None:
    template = Template.parse(
        "{{ range .Tools }}{{ .Function.Name }}:{{ json .Function.Parameters.Required }} {{ end }}"
        "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }}{{ .Function.Arguments }}"
        "{{ end }}{{ end }}"
    )
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"required": ["x"]}}}]
    call = ToolCall("f", {"x": 1, "a": "<"})
    msgs = [user("go"), Message("assistant", "", tool_calls=(call,))]
    assert render(template, msgs, tools=tools) == 'f:["x"] f{"x":1,"a":"\\u003c"}'


def test_tool_prints_as_json() -> None:
    template = Template.parse("{{ range .Tools }}{{ . }}{{ end }}{{ .Messages | len }}")
    tools = [{"type": "function", "function": {"name": "f", "description": "d"}}]
    want = (
        '{"type":"function","function":{"name":"f","description":"d",'
        '"parameters":{"type":"","required":null,"properties":null}}}1'
    )
    assert render(template, [user("x")], tools=tools) == want


@pytest.mark.parametrize(
    ("think", "want"),
    [
        (None, "false||false"),
        (True, "true||true"),
        (False, "false||true"),
        ("high", "true|high|true"),
    ],
    ids=["unset", "on", "off", "level"],
)
def test_think_values(think: bool | str | None, want: str) -> None:
    template = Template.parse("{{ .Think }}|{{ .ThinkLevel }}|{{ .IsThinkSet }}{{ .Messages }}")
    assert render(template, [], think=think).startswith(want)


HISTORY = [sys("rules here"), user("one two"), bot("three four"), user("five six")]

TRUNCATION_CASES = [
    # rendered CHAT prompt word counts: each message costs its words (role tag glued on)
    (
        "fits",
        HISTORY,
        100,
        "<system>rules here <user>one two <assistant>three four <user>five six <assistant>",
    ),
    (
        "exact fit",
        HISTORY,
        9,
        "<system>rules here <user>one two <assistant>three four <user>five six <assistant>",
    ),
    ("only last fits", HISTORY, 6, "<system>rules here <user>five six <assistant>"),
    ("keeps last even if too big", HISTORY, 1, "<system>rules here <user>five six <assistant>"),
    (
        "drops oldest",
        HISTORY,
        8,
        "<system>rules here <assistant>three four <user>five six <assistant>",
    ),
    ("single message", [user("a b c d e")], 1, "<user>a b c d e <assistant>"),
]


@pytest.mark.parametrize(
    ("messages", "num_ctx", "want"),
    [c[1:] for c in TRUNCATION_CASES],
    ids=[c[0] for c in TRUNCATION_CASES],
)
def test_chat_truncation(messages: list[Message], num_ctx: int, want: str) -> None:
    got = build_chat_prompt(CHAT, messages, num_ctx=num_ctx, count_tokens=words)
    assert got.text == want


def test_truncate_false_keeps_everything() -> None:
    got = build_chat_prompt(CHAT, HISTORY, num_ctx=1, count_tokens=words, truncate=False)
    assert got.text.count("<") == 5


def test_image_tokens_count_against_context() -> None:
    msgs = [user("old"), Message("user", "look", images=(b"png",)), bot("ok"), user("new")]
    plain = build_chat_prompt(CHAT, msgs, num_ctx=50, count_tokens=words)
    costly = build_chat_prompt(CHAT, msgs, num_ctx=50, count_tokens=words, image_tokens=768)
    assert plain.images == [b"png"]
    assert "[img-0]look" in plain.text
    assert costly.images == []
    assert costly.text == "<assistant>ok <user>new <assistant>"


def test_image_placeholder_replaced_in_place() -> None:
    msg = Message("user", "see [img] and [img]", images=(b"a", b"b"))
    got = build_chat_prompt(CHAT, [msg], num_ctx=99, count_tokens=words)
    assert got.text == "<user>see [img-0] and [img-1] <assistant>"


@pytest.mark.parametrize(
    ("messages", "model_system", "want_roles"),
    [
        ([user("x")], "sys", ["system", "user"]),
        ([sys("mine"), user("x")], "sys", ["system", "user"]),
        ([user("x")], "", ["user"]),
        ([], "sys", []),
    ],
    ids=["prepended", "request system wins", "no model system", "empty"],
)
def test_with_model_system(
    messages: list[Message], model_system: str, want_roles: list[str]
) -> None:
    assert [m.role for m in with_model_system(messages, model_system)] == want_roles


GENERATE_CASES = [
    ("plain", {"prompt": "hi"}, CHAT, "<user>hi <assistant>"),
    ("request system", {"prompt": "hi", "system": "s"}, CHAT, "<system>s <user>hi <assistant>"),
    ("model system", {"prompt": "hi", "model_system": "m"}, CHAT, "<system>m <user>hi <assistant>"),
    (
        "request overrides model",
        {"prompt": "hi", "system": "s", "model_system": "m"},
        CHAT,
        "<system>s <user>hi <assistant>",
    ),
    (
        "model messages",
        {"prompt": "hi", "model_messages": [user("ex")]},
        CHAT,
        "<user>ex\n\nhi <assistant>",
    ),
    (
        "context skips model messages",
        {"prompt": "hi", "model_messages": [user("ex")], "has_context": True},
        CHAT,
        "<user>hi <assistant>",
    ),
    ("legacy", {"prompt": "hi", "system": "s"}, LEGACY, "[S]s [U]hi [A]"),
    ("suffix", {"prompt": "def f(", "suffix": "return x"}, FIM, "<PRE>def f(<SUF>return x<MID>"),
    ("no suffix", {"prompt": "def f("}, FIM, "def f("),
]


@pytest.mark.parametrize(
    ("kwargs", "template", "want"),
    [c[1:] for c in GENERATE_CASES],
    ids=[c[0] for c in GENERATE_CASES],
)
def test_generate_prompt(kwargs: dict[str, object], template: Template, want: str) -> None:
    got = build_generate_prompt(template, num_ctx=99, count_tokens=words, **kwargs)  # type: ignore[arg-type]
    assert got.text == want
