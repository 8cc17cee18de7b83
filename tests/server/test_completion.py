"""The completion path's glue: the runner's tokenizer, reached from a worker thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from ollamapy.llm import Runner
from ollamapy.scheduler import ModelLoad
from ollamapy.server.completion import bounded_prediction, check_format, tokenizer_of
from ollamapy.types import SamplingOptions
from tests.fakes import MODEL, Script, ScriptedRunner, serve_scripted, word_tokens


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


@pytest.mark.parametrize(
    ("asked", "sent"),
    [
        (-1, 20_480),
        (5, 5),
        (20_480, 20_480),
        (20_481, 20_480),
        (10**9, 20_480),
        (-2, -2),
        (-7, 20_480),
    ],
    ids=["unlimited", "small", "at-the-limit", "past-it", "huge", "fill-context", "other-negative"],
)
def test_num_predict_is_bounded_to_ten_contexts_as_ollama_bounds_it(asked: int, sent: int) -> None:
    sampling = SamplingOptions(num_predict=asked)
    assert bounded_prediction(sampling, num_ctx=2048).num_predict == sent


def test_a_request_without_num_predict_reaches_the_runner_bounded(tmp_path: Path) -> None:
    for server in serve_scripted(tmp_path, Script()):
        body = {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_ctx": 512}}
        assert httpx.post(f"{server.url}/api/generate", json=body).status_code == 200
        (request,) = server.script.requests
        assert request.options.num_predict == 5120
