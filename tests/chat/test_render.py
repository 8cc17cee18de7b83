"""Messages -> prompt: Ollama's two template styles, collation, truncation, generate."""

from __future__ import annotations

import pytest

from ollamapy.chat.messages import Message, ToolCall
from ollamapy.chat.prompt import build_chat_prompt, build_generate_prompt, with_model_system
from ollamapy.chat.render import collate, render
from ollamapy.template import Template

CHAT = Template.parse("{{ range .Messages }}<{{ .Role }}>{{ .Content }} {{ end }}<assistant>")
LEGACY = Template.parse(
    "{{ if .System }}[S]{{ .System }} {{ end }}[U]{{ .Prompt }} [A]{{ .Response }}</s> "
)
FIM = Template.parse(
    "{{ if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{ else }}{{ .Prompt }}{{ end }}"
)


def words(text: str) -> list[int]:
    """Fake tokenizer: one token per whitespace-separated word."""
    return [len(word) for word in text.split()]


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
        (True, "true|medium|true"),
        (False, "false||true"),
        ("high", "true|high|true"),
        ("max", "true|max|true"),
    ],
    ids=["unset", "on", "off", "level", "max"],
)
def test_think_values(think: bool | str | None, want: str) -> None:
    """As Ollama's api.ThinkValue: `true` alone reads as the level "medium"."""
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
    got = build_chat_prompt(CHAT, messages, num_ctx=num_ctx, tokenize=words)
    assert got.text == want


def test_truncate_false_keeps_everything() -> None:
    got = build_chat_prompt(CHAT, HISTORY, num_ctx=1, tokenize=None)
    assert got.text.count("<") == 5


def test_image_tokens_count_against_context() -> None:
    msgs = [user("old"), Message("user", "look", images=(b"png",)), bot("ok"), user("new")]
    plain = build_chat_prompt(CHAT, msgs, num_ctx=50, tokenize=words)
    costly = build_chat_prompt(CHAT, msgs, num_ctx=50, tokenize=words, image_tokens=768)
    assert plain.images == [b"png"]
    assert "[img-0]look" in plain.text
    assert costly.images == []
    assert costly.text == "<assistant>ok <user>new <assistant>"


def test_image_placeholder_replaced_in_place() -> None:
    msg = Message("user", "see [img] and [img]", images=(b"a", b"b"))
    got = build_chat_prompt(CHAT, [msg], num_ctx=99, tokenize=words)
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
    got = build_generate_prompt(template, **kwargs)  # type: ignore[arg-type]
    assert got.text == want


# ----------------------------------------------------------------------------- fitting


def ollama_walk(messages: list[Message], num_ctx: int) -> str:
    """Ollama's chatPrompt, as written: render every longer suffix until one does not fit."""
    first = len(messages) - 1
    for i in range(len(messages) - 2, -1, -1):
        system = [m for m in messages[:i] if m.role == "system"]
        if len(words(render(CHAT, system + messages[i:]))) > num_ctx:
            break
        first = i
    system = [m for m in messages[:first] if m.role == "system"]
    return render(CHAT, system + messages[first:])


def chat_of(sizes: list[int], word: str = "w") -> list[Message]:
    """A conversation whose n-th message has sizes[n] words (a system message every 7th)."""
    messages = []
    for n, size in enumerate(sizes):
        role = "system" if n % 7 == 3 else ("user" if n % 2 == 0 else "assistant")
        messages.append(Message(role, " ".join([word] * size)))
    return messages


@pytest.mark.parametrize("seed", range(40))
def test_fitting_keeps_what_ollamas_walk_keeps(seed: int) -> None:
    import random

    rng = random.Random(seed)
    messages = chat_of([rng.randint(1, 30) for _ in range(rng.randint(1, 60))])
    num_ctx = rng.randint(1, 400)
    got = build_chat_prompt(CHAT, messages, num_ctx=num_ctx, tokenize=words)
    assert got.text == ollama_walk(messages, num_ctx)


def test_a_conversation_that_fits_by_its_bytes_is_never_tokenized() -> None:
    asked: list[str] = []

    def tokenize(text: str) -> list[int]:
        asked.append(text)
        return words(text)

    messages = chat_of([5] * 500)
    got = build_chat_prompt(CHAT, messages, num_ctx=100_000, tokenize=tokenize)
    assert asked == [] and got.tokens is None
    assert got.text == render(CHAT, messages)


def test_a_conversation_that_fits_by_its_tokens_is_tokenized_once() -> None:
    asked: list[str] = []

    def tokenize(text: str) -> list[int]:
        asked.append(text)
        return words(text)

    messages = chat_of([5] * 100)
    size = len(words(render(CHAT, messages)))
    got = build_chat_prompt(CHAT, messages, num_ctx=size, tokenize=tokenize)
    assert asked == [got.text] and got.tokens == words(got.text)


def test_cutting_a_long_conversation_costs_a_few_counts_not_one_per_message() -> None:
    asked: list[str] = []

    def tokenize(text: str) -> list[int]:
        asked.append(text)
        return words(text)

    messages = chat_of([5] * 512, word="word")  # too many bytes for the bound to settle it
    got = build_chat_prompt(CHAT, messages, num_ctx=1000, tokenize=tokenize)
    assert got.text == ollama_walk(messages, 1000)
    assert 10 < got.text.count("<user>") < 200  # a cut in the middle
    assert len(asked) <= 11  # the whole conversation, then a binary search over 511 cuts
    assert got.tokens == words(got.text)  # handed on, so the runner need not tokenize


def test_when_only_the_newest_message_is_kept_its_tokens_are_handed_on_too() -> None:
    messages = chat_of([50] * 8, word="word")
    got = build_chat_prompt(CHAT, messages, num_ctx=20, tokenize=words)
    assert got.text == ollama_walk(messages, 20)
    assert got.tokens == words(got.text)
