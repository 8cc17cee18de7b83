"""Choosing a named template for a GGUF's Jinja chat template."""

from __future__ import annotations

import json
import random
from importlib.resources import files

import pytest

from ollamapy.template import named
from ollamapy.template.named import (
    THRESHOLD,
    levenshtein,
    named_template,
    template_by_name,
)
from tests.conftest import CONFORMANCE

HF_CASES = [
    next(iter(json.loads(line).items()))
    for line in (CONFORMANCE / "hf_chat_templates.jsonl").read_text().splitlines()
    if line.strip()
]
INDEX = json.loads((CONFORMANCE / "index.json").read_text())


@pytest.mark.parametrize(
    ("expected", "jinja"), HF_CASES, ids=[f"{i}-{name}" for i, (name, _) in enumerate(HF_CASES)]
)
def test_real_world_templates(expected: str, jinja: str) -> None:
    match = named_template(jinja)
    assert match is not None
    assert match.name == expected
    assert match.template == (CONFORMANCE / f"{expected}.gotmpl").read_text()


@pytest.mark.parametrize(
    "chat_template",
    ["", "{{ messages }}", "x" * 5000, INDEX[0]["template"][::-1]],
    ids=["empty", "tiny", "long-junk", "reversed"],
)
def test_no_match(chat_template: str) -> None:
    assert named_template(chat_template) is None


@pytest.mark.parametrize(
    ("extra", "matches"),
    [(0, True), (THRESHOLD - 1, True), (THRESHOLD, False)],
    ids=["exact", "just-below-threshold", "at-threshold"],
)
def test_threshold(extra: int, matches: bool) -> None:
    match = named_template(INDEX[0]["template"] + "\0" * extra)
    assert (match.name if match else None) == ("chatml" if matches else None)


def test_ties_go_to_the_first_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = (("abcX", "zephyr"), ("abcY", "chatml"), ("abcZ", "alpaca"))
    monkeypatch.setattr(named, "_index", lambda: entries)
    match = named_template("abcW")
    assert match is not None
    assert match.name == "zephyr"


@pytest.mark.parametrize(
    ("name", "stop"),
    [
        ("chatml", ["<|im_start|>", "<|im_end|>"]),
        ("llama3-instruct", ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    ],
    ids=["chatml", "llama3"],
)
def test_template_by_name(name: str, stop: list[str]) -> None:
    template = template_by_name(name)
    assert template is not None
    assert template.template == (CONFORMANCE / f"{name}.gotmpl").read_text()
    assert template.stop == stop
    assert template.parameters == json.loads((CONFORMANCE / f"{name}.json").read_text())


def test_unknown_name() -> None:
    assert template_by_name("no-such-template") is None


def test_callers_cannot_corrupt_the_cache() -> None:
    first = template_by_name("chatml")
    assert first is not None
    first.parameters["stop"].append("oops")
    again = template_by_name("chatml")
    assert again is not None
    assert "oops" not in again.stop


def test_packaged_data_matches_conformance_data() -> None:
    packaged = files("ollamapy.template").joinpath("named")
    names = sorted(p.name for p in CONFORMANCE.iterdir() if p.suffix in (".gotmpl", ".json"))
    assert sorted(p.name for p in packaged.iterdir()) == names
    for name in names:
        assert packaged.joinpath(name).read_bytes() == (CONFORMANCE / name).read_bytes(), name


def reference_distance(a: str, b: str) -> int:
    """Textbook dynamic programming, to check the fast version against."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("✓模型", "x模型", 1),
        ("a" * 300, "a" * 300, 0),
        ("a" * 300, "b" * 300, 300),
    ],
    ids=["empty", "insert", "delete", "kitten", "flaw", "code-points", "long-equal", "long-diff"],
)
def test_levenshtein(a: str, b: str, expected: int) -> None:
    assert levenshtein(a, b) == expected


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed{s}")
def test_levenshtein_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        a = "".join(rng.choice("abc{}% ") for _ in range(rng.randrange(0, 90)))
        b = "".join(rng.choice("abc{}% ") for _ in range(rng.randrange(0, 90)))
        exact = reference_distance(a, b)
        assert levenshtein(a, b) == exact, (a, b)
        for limit in (1, 5, 20, 100):
            assert levenshtein(a, b, limit) == min(exact, limit), (a, b, limit)
