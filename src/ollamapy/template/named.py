"""Pick one of Ollama's named prompt templates for a GGUF's Jinja chat template.

A GGUF imported without a TEMPLATE carries a Hugging Face Jinja template that the Go template
engine cannot run. Like Ollama, we compare it with the Jinja sources in `named/index.json`
and take the closest by Levenshtein distance (over code points, first entry winning ties),
provided the distance is below 100; the result is plain Go template text plus its default
parameters, so this module needs nothing from the template engine.

Distances are computed with a bit-parallel algorithm (Myers/Hyyrö) and pruned by cheap lower
bounds, so matching against every entry costs milliseconds even for templates of a few KB.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

THRESHOLD = 100
"""A template matches only when its distance is below this (Ollama's `score < 100`)."""


@dataclass(frozen=True, slots=True)
class NamedTemplate:
    """A named template: Go template text and its default parameters (e.g. `stop`)."""

    name: str
    template: str
    parameters: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def stop(self) -> list[str]:
        stop = self.parameters.get("stop", [])
        return list(stop) if isinstance(stop, list) else []


def named_template(chat_template: str) -> NamedTemplate | None:
    """The named template whose Jinja source is closest to `chat_template`, or None when
    none is within THRESHOLD edits."""
    best: str | None = None
    limit = THRESHOLD
    for jinja, name in _index():
        distance = levenshtein(chat_template, jinja, limit)
        if distance < limit:
            best, limit = name, distance
    return template_by_name(best) if best is not None else None


def template_by_name(name: str) -> NamedTemplate | None:
    """Load a named template (`chatml`, `llama3-instruct`, ...), or None if there is none."""
    if name not in _names():
        return None
    text, parameters = _load(name)
    return NamedTemplate(name, text, json.loads(parameters))


def levenshtein(a: str, b: str, limit: int | None = None) -> int:
    """Edit distance between `a` and `b` in code points.

    With `limit`, any distance of `limit` or more may be reported as `limit` itself, which lets
    clearly different strings be rejected after little or no work.
    """
    if limit is not None and _lower_bound(a, b) >= limit:
        return limit
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    return _bit_parallel(b, a, limit)


def _lower_bound(a: str, b: str) -> int:
    """A cheap bound no edit script can beat: the length gap, then the letters one string has
    that the other lacks (each needs its own insertion, deletion or substitution)."""
    gap = abs(len(a) - len(b))
    if gap >= THRESHOLD:
        return gap
    surplus = Counter(a)
    surplus.subtract(b)
    extra = sum(n for n in surplus.values() if n > 0)
    missing = -sum(n for n in surplus.values() if n < 0)
    return max(gap, extra, missing)


def _bit_parallel(pattern: str, text: str, limit: int | None) -> int:
    """Hyyrö's form of Myers' algorithm: one column of the DP table per text character, kept
    as bit vectors of vertical +1/-1 steps; `score` tracks the table's bottom cell."""
    mask = (1 << len(pattern)) - 1
    top = 1 << (len(pattern) - 1)
    peq: dict[str, int] = {}
    for i, char in enumerate(pattern):
        peq[char] = peq.get(char, 0) | (1 << i)
    plus, minus, score = mask, 0, len(pattern)
    remaining = len(text)
    for char in text:
        eq = peq.get(char, 0)
        xv = eq | minus
        xh = (((eq & plus) + plus) ^ plus) | eq
        h_plus = minus | (mask ^ (xh | plus))
        h_minus = plus & xh
        score += 1 if h_plus & top else -1 if h_minus & top else 0
        h_plus = ((h_plus << 1) | 1) & mask
        h_minus = (h_minus << 1) & mask
        plus = h_minus | (mask ^ (xv | h_plus))
        minus = h_plus & xv
        remaining -= 1
        if limit is not None and score - remaining >= limit:
            return limit
    return score


@cache
def _index() -> tuple[tuple[str, str], ...]:
    entries = json.loads(_data("index.json"))
    return tuple((entry["template"], entry["name"]) for entry in entries)


@cache
def _names() -> frozenset[str]:
    return frozenset(name for _, name in _index())


@cache
def _load(name: str) -> tuple[str, str]:
    """The template text and its parameters' JSON (parsed afresh for each caller)."""
    text = _data(f"{name}.gotmpl").replace("\r\n", "\n")
    try:
        parameters = _data(f"{name}.json")
    except FileNotFoundError:
        parameters = "{}"
    return text, parameters


def _data(filename: str) -> str:
    return files("ollamapy.template").joinpath("named", filename).read_text(encoding="utf-8")
