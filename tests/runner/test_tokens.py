"""Prompt tokenization reuses recent prompts' tokens, and gives exactly the full tokens."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest

from ollamapy.chat.messages import Message
from ollamapy.chat.prompt import Counted, build_chat_prompt
from ollamapy.runner.native import Model, init_backend
from ollamapy.runner.tokens import PromptTokenizer, common_prefix_length, common_suffix_length
from ollamapy.template import Template
from tests.conftest import bundled_model_file

SPECIALS = {"<s>": 1, "<|im_start|>": 2, "<|im_end|>": 3}


class WordVocabulary:
    """A fake tokenizer: specials as whole tokens, then one token per character."""

    add_eos = False

    def __init__(self, add_bos: bool = False) -> None:
        self.add_bos = add_bos
        self.tokenized: list[str] = []
        self._ids: dict[str, int] = dict(SPECIALS)
        self._pieces: dict[int, bytes] = {v: k.encode() for k, v in SPECIALS.items()}

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        self.tokenized.append(text)
        tokens = [1] if add_special and self.add_bos else []
        for part in re.split("(<\\|im_start\\|>|<\\|im_end\\|>)", text):
            if part in SPECIALS:
                tokens.append(SPECIALS[part])
                continue
            for char in part:
                token = self._ids.setdefault(char, len(self._ids) + 10)
                self._pieces[token] = char.encode()
                tokens.append(token)
        return tokens

    def piece(self, token: int) -> bytes:
        return self._pieces[token]

    def is_special(self, token: int) -> bool:
        return token in SPECIALS.values()


def chatml(turns: list[str]) -> str:
    roles = ("user", "assistant")
    body = "".join(
        f"<|im_start|>{roles[n % 2]}\n{text}<|im_end|>\n" for n, text in enumerate(turns)
    )
    return body + "<|im_start|>assistant\n"


@pytest.mark.parametrize("add_bos", [False, True], ids=["no bos", "bos"])
def test_the_next_turn_tokenizes_only_what_follows_the_shared_part(add_bos: bool) -> None:
    vocab = WordVocabulary(add_bos)
    prompts = PromptTokenizer(vocab)
    first = chatml(["hello there", "hi"])
    second = chatml(["hello there", "hi", "how are you"])
    assert prompts.tokenize(first) == vocab.tokenize(first, add_special=True)
    vocab.tokenized.clear()
    assert prompts.tokenize(second) == WordVocabulary(add_bos).tokenize(second, add_special=True)
    (tail,) = vocab.tokenized  # from the last special token both prompts share
    assert tail == "user\nhow are you<|im_end|>\n<|im_start|>assistant\n"


def test_a_prompt_whose_pieces_do_not_spell_it_is_not_kept() -> None:
    vocab = WordVocabulary()
    vocab.piece = lambda token: b"?"  # type: ignore[method-assign]
    prompts = PromptTokenizer(vocab)
    prompts.tokenize(chatml(["a"]))
    vocab.tokenized.clear()
    prompts.tokenize(chatml(["a", "b"]))
    assert vocab.tokenized == [chatml(["a", "b"])]  # nothing reused


def test_a_tokenizer_that_appends_eos_reuses_nothing() -> None:
    vocab = WordVocabulary()
    vocab.add_eos = True  # type: ignore[misc]
    prompts = PromptTokenizer(vocab)
    prompts.tokenize(chatml(["a"]))
    vocab.tokenized.clear()
    prompts.tokenize(chatml(["a", "b"]))
    assert vocab.tokenized == [chatml(["a", "b"])]


@pytest.mark.parametrize(
    ("capacity", "tail"),
    [(2, "user\nconversation 0"), (3, "assistant\nmore")],
    ids=["evicted", "kept"],
)
def test_only_the_most_recent_prompts_are_kept(capacity: int, tail: str) -> None:
    vocab = WordVocabulary()
    prompts = PromptTokenizer(vocab, capacity=capacity)
    for n in range(3):
        prompts.tokenize(chatml([f"conversation {n}"]))
    vocab.tokenized.clear()
    prompts.tokenize(chatml(["conversation 0", "more"]))
    assert vocab.tokenized[0].startswith(tail)


def with_system(system: str, turns: list[str], first: int) -> str:
    """The conversation cut to fit: its system message, then the turns from `first` on."""
    roles = ("user", "assistant")
    head = f"<|im_start|>system\n{system}<|im_end|>\n"
    body = "".join(
        f"<|im_start|>{roles[n % 2]}\n{turns[n]}<|im_end|>\n" for n in range(first, len(turns))
    )
    return head + body + "<|im_start|>assistant\n"


@pytest.mark.parametrize("add_bos", [False, True], ids=["no bos", "bos"])
def test_a_cut_conversation_is_spliced_from_both_ends_of_the_whole(add_bos: bool) -> None:
    vocab = WordVocabulary(add_bos)
    prompts = PromptTokenizer(vocab)
    turns = [f"turn number {n}" for n in range(12)]
    prompts.tokenize(with_system("be brief", turns, 0))
    vocab.tokenized.clear()
    cut = with_system("be brief", turns, 7)
    spliced = prompts.tokenize(cut)
    (middle,) = vocab.tokenized  # only the seam: at most the first kept turn
    assert middle == "assistant\nturn number 7<|im_end|>"
    assert spliced == vocab.tokenize(cut, add_special=True)


@pytest.mark.parametrize("add_bos", [False, True], ids=["no bos", "bos"])
def test_every_cut_of_a_conversation_and_its_next_turn_equal_a_full_tokenization(
    add_bos: bool,
) -> None:
    vocab = WordVocabulary(add_bos)
    prompts = PromptTokenizer(vocab)
    turns = [f"t{n} " * (n % 4 + 1) for n in range(20)]
    prompts.tokenize(with_system("sys", turns, 0))
    for first in (10, 5, 15, 12, 19, 1):  # a binary search's order
        cut = with_system("sys", turns, first)
        assert prompts.tokenize(cut) == vocab.tokenize(cut, add_special=True)
    longer = with_system("sys", [*turns, "reply", "next"], 12)
    assert prompts.tokenize(longer) == vocab.tokenize(longer, add_special=True)


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [(b"", b"x", 0), (b"abc", b"xbc", 2), (b"bc", b"abc", 2), (b"x" * 9000, b"x" * 9000, 9000)],
)
def test_common_suffix_length(a: bytes, b: bytes, want: int) -> None:
    assert common_suffix_length(a, b) == want
    assert common_suffix_length(b, a) == want


def test_common_suffix_length_across_blocks() -> None:
    a = bytes(random.Random(4).randrange(256) for _ in range(20_000))
    for cut in (0, 1, 4095, 4096, 4097, 12_345, 19_999):
        b = a[:cut] + bytes([(a[cut] + 1) % 256]) + a[cut + 1 :]
        assert common_suffix_length(a, b) == len(a) - cut - 1


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [(b"", b"x", 0), (b"abc", b"abd", 2), (b"ab", b"abc", 2), (b"x" * 9000, b"x" * 9000, 9000)],
)
def test_common_prefix_length(a: bytes, b: bytes, want: int) -> None:
    assert common_prefix_length(a, b) == want
    assert common_prefix_length(b, a) == want


def test_common_prefix_length_across_blocks() -> None:
    a = bytes(random.Random(3).randrange(256) for _ in range(20_000))
    for cut in (0, 1, 4095, 4096, 4097, 12_345, 19_999):
        b = a[:cut] + bytes([(a[cut] + 1) % 256]) + a[cut + 1 :]
        assert common_prefix_length(a, b) == cut


# ----------------------------------------------------------------------------- real models


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def model(request: pytest.FixtureRequest) -> Iterator[Model]:
    init_backend()
    loaded = Model(str(bundled_model_file(request.param)))
    try:
        yield loaded
    finally:
        loaded.close()


def gemma(turns: list[str]) -> str:
    roles = ("user", "model")
    body = "".join(
        f"<start_of_turn>{roles[n % 2]}\n{text}<end_of_turn>\n" for n, text in enumerate(turns)
    )
    return body + "<start_of_turn>model\n"


WORDS = ["hello", " world", "ünïcode", "日本語", "  spaced ", "\n", "tabs\t", "code()", "é", "!"]


@pytest.mark.integration
@pytest.mark.parametrize("render", [chatml, gemma], ids=["chatml", "gemma"])
def test_reused_tokens_equal_a_full_tokenization_of_every_turn(
    model: Model, render: object
) -> None:
    assert callable(render)
    rng = random.Random(7)
    spy = Spy(model)
    prompts = PromptTokenizer(spy)
    turns: list[str] = []
    for _ in range(12):
        turns.append("".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))))
        text = render(turns)
        assert prompts.tokenize(text) == model.tokenize(text, add_special=True, parse_special=True)
    if (model.add_bos, render) in ((False, chatml), (True, gemma)):  # its own turn markers
        assert spy.tokenized[0] == render(turns[:1])
        assert all(len(tail) < 200 for tail in spy.tokenized[1:])  # each turn: only its tail


@pytest.mark.integration
def test_cut_conversations_equal_a_full_tokenization(model: Model) -> None:
    rng = random.Random(11)
    prompts = PromptTokenizer(model)
    turns = ["".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(30)]
    prompts.tokenize(with_system("you are terse ünï", turns, 0))
    for first in (15, 7, 22, 18, 29, 3):
        cut = with_system("you are terse ünï", turns, first)
        assert prompts.tokenize(cut) == model.tokenize(cut, add_special=True, parse_special=True)
    longer = with_system("you are terse ünï", [*turns, "ok", "more"], 18)
    assert prompts.tokenize(longer) == model.tokenize(longer, add_special=True, parse_special=True)


@pytest.mark.integration
@pytest.mark.parametrize("num_ctx", [300, 1000, 2500])
def test_a_conversation_cut_from_its_whole_tokens_is_the_binary_searchs_cut(
    model: Model, num_ctx: int
) -> None:
    rng = random.Random(num_ctx)
    turns = [
        Message("user" if n % 2 else "assistant", "".join(rng.choice(WORDS) for _ in range(9)))
        for n in range(200)
    ]
    messages = [Message("system", "you are terse"), *turns]
    template = Template.parse(CHATML_TEMPLATE)
    prompts = PromptTokenizer(model)

    def counted(text: str) -> Counted:
        return Counted(*prompts.tokenize_with_cuts(text))

    def plain(text: str) -> list[int]:
        return model.tokenize(text, add_special=True, parse_special=True)

    got = build_chat_prompt(template, messages, num_ctx=num_ctx, tokenize=counted)
    searched = build_chat_prompt(template, messages, num_ctx=num_ctx, tokenize=plain)
    assert got.text == searched.text and got.tokens == searched.tokens == plain(got.text)


CHATML_TEMPLATE = (
    "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


class Spy:
    """The model's vocabulary, recording what it was asked to tokenize."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.tokenized: list[str] = []
        self.add_bos, self.add_eos = model.add_bos, model.add_eos

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        self.tokenized.append(text)
        return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def piece(self, token: int) -> bytes:
        return self.model.piece(token)

    def is_special(self, token: int) -> bool:
        return self.model.is_special(token)
