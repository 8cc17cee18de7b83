"""Prompt tokenization reuses recent prompts' tokens, and gives exactly the full tokens."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest

from ollamapy.runner.native import Model, init_backend
from ollamapy.runner.tokens import PromptTokenizer, common_prefix_length
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
