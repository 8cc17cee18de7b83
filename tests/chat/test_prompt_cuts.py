"""Cutting a long conversation to fit, from the whole render's tokens and special-token places.

When the tokenizer says where special tokens end in the whole render, every kept suffix's
token count follows from it; two renders confirm the cut. Whatever the template, the result
is exactly what Ollama's walk keeps (checked against it), with the tokens handed on.
"""

from __future__ import annotations

import random
import re

import pytest

from ollamapy.chat.messages import Message
from ollamapy.chat.prompt import Counted, build_chat_prompt
from ollamapy.chat.render import render
from ollamapy.template import Template

TURNS = Template.parse(
    "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
COUNTING = Template.parse(
    "{{ len .Messages }} turns\n{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}"
    "<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
SPECIAL = re.compile(r"(<\|im_start\|>|<\|im_end\|>)")


class Tokenizer:
    """Specials are one token each; the text between them one token per word. Each piece
    between specials is tokenized on its own, as llama.cpp does."""

    def __init__(self, *, places: bool = True) -> None:
        self.places = places
        self.asked: list[str] = []

    def __call__(self, text: str) -> Counted:
        self.asked.append(text)
        tokens, offsets, counts, position = [1], [], [], 0  # BOS
        for part in SPECIAL.split(text):
            position += len(part.encode())
            if SPECIAL.fullmatch(part):
                tokens.append(2)
                offsets.append(position)
                counts.append(len(tokens))
            else:
                tokens += [len(word) + 10 for word in part.split()]
        return Counted(tokens, offsets, counts) if self.places else Counted(tokens)


def walk(template: Template, messages: list[Message], num_ctx: int) -> str:
    """Ollama's chatPrompt, as written: render every longer suffix until one does not fit."""
    count = Tokenizer()
    first = len(messages) - 1
    for i in range(len(messages) - 2, -1, -1):
        system = [m for m in messages[:i] if m.role == "system"]
        if len(count(render(template, system + messages[i:])).tokens) > num_ctx:
            break
        first = i
    system = [m for m in messages[:first] if m.role == "system"]
    return render(template, system + messages[first:])


def conversation(
    rng: random.Random, size: int, *, system_at: tuple[int, ...] = (0,)
) -> list[Message]:
    messages = []
    for n in range(size):
        role = "system" if n in system_at else ("user" if n % 2 else "assistant")
        text = " ".join(rng.choice(["word", "ünï", "日本", "x"]) for _ in range(rng.randint(1, 9)))
        messages.append(Message(role, f"{n}: {text}"))
    return messages


@pytest.mark.parametrize("seed", range(30))
def test_the_cut_from_the_whole_render_is_ollamas_and_needs_one_count(seed: int) -> None:
    rng = random.Random(seed)
    messages = conversation(rng, rng.randint(3, 120))
    num_ctx = rng.randint(10, 900)
    tokenize = Tokenizer()
    got = build_chat_prompt(TURNS, messages, num_ctx=num_ctx, tokenize=tokenize)
    assert got.text == walk(TURNS, messages, num_ctx)
    assert got.tokens == Tokenizer()(got.text).tokens
    assert len(tokenize.asked) <= 1  # the whole render, if its bytes did not settle it


@pytest.mark.parametrize(
    ("template", "system_at"),
    [(TURNS, (0, 40)), (COUNTING, (0,))],
    ids=["a system message later on", "a template that is not one piece per message"],
)
def test_when_the_cut_cannot_be_predicted_the_search_still_finds_ollamas(
    template: Template, system_at: tuple[int, ...]
) -> None:
    messages = conversation(random.Random(5), 100, system_at=system_at)
    tokenize = Tokenizer()
    got = build_chat_prompt(template, messages, num_ctx=300, tokenize=tokenize)
    assert got.text == walk(template, messages, 300)
    assert got.tokens == Tokenizer()(got.text).tokens
    assert 1 < len(tokenize.asked) <= 9  # the whole, then a binary search


def test_a_tokenizer_that_knows_no_places_gets_the_binary_search() -> None:
    messages = conversation(random.Random(6), 100)
    tokenize = Tokenizer(places=False)
    got = build_chat_prompt(TURNS, messages, num_ctx=300, tokenize=tokenize)
    assert got.text == walk(TURNS, messages, 300)
    assert len(tokenize.asked) > 1


def test_when_not_even_the_newest_message_fits_it_is_kept_alone() -> None:
    messages = conversation(random.Random(7), 30)
    messages[-1] = Message("user", "long " * 400)
    got = build_chat_prompt(TURNS, messages, num_ctx=100, tokenize=Tokenizer())
    assert got.text == walk(TURNS, messages, 100)
    assert got.text.count("<|im_start|>") == 3  # system, the newest message, the reply's
