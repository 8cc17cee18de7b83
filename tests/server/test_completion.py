"""The completion path's glue: the runner's tokenizer, reached from a worker thread."""

from __future__ import annotations

import asyncio
import threading

from ollamapy.llm import Runner
from ollamapy.scheduler import ModelLoad
from ollamapy.server.completion import check_format, tokenizer_of
from tests.fakes import Script, ScriptedRunner, word_tokens


async def test_the_tokenizer_runs_on_the_loop_for_a_caller_in_a_thread() -> None:
    load = ModelLoad.__new__(ModelLoad)
    script = Script()
    runner: Runner = ScriptedRunner(script, load)
    tokenize = tokenizer_of(runner)
    callers: list[str] = []

    def in_thread() -> list[int]:
        callers.append(threading.current_thread().name)
        return tokenize("two words").tokens

    assert await asyncio.to_thread(in_thread) == word_tokens("two words")
    assert script.tokenized == ["two words"]
    assert callers != [threading.current_thread().name]


def test_format_is_absent_json_or_a_schema() -> None:
    assert check_format("") is None
    assert check_format("json") == "json"
    assert check_format({"type": "object"}) == {"type": "object"}
