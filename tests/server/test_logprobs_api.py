"""logprobs, truncate and shift through the real app, with the scripted runner.

What reaches the runner (the switches, and nothing to compute when logprobs are not asked
for), and what each API makes of the runner's entries: Ollama's `logprobs` list on every
streamed object and all of them on the one object of `stream: false`; OpenAI's
`choices[].logprobs` (`content` for chat, the legacy lists for text completions), read by
the official clients; and Ollama's 400s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.fakes import MODEL, Script, ScriptedServer, scripted_logprob, serve_scripted

CHUNKS = ["Hello", " wor", "ld"]
ASK: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path_factory.mktemp("logprobs"), Script())


@pytest.fixture
def server(live: ScriptedServer) -> ScriptedServer:
    live.script.chunks = list(CHUNKS)
    live.script.requests.clear()
    return live


def post(server: ScriptedServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json={"model": MODEL, **body}, timeout=30)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


def expected(top: int) -> list[dict[str, Any]]:
    """Ollama's JSON for the entries the scripted runner sends with CHUNKS."""
    return [scripted_logprob(i, text, top).to_json() for i, text in enumerate(CHUNKS)]


# ----------------------------------------------------------------------------- native


def test_streamed_generate_carries_each_chunks_logprobs(server: ScriptedServer) -> None:
    out = lines(post(server, "/api/generate", {"prompt": "hi", "logprobs": True}))
    assert [o["logprobs"] for o in out[:-1]] == [[entry] for entry in expected(0)]
    assert "logprobs" not in out[-1]
    assert list(out[0]) == ["model", "created_at", "response", "done", "logprobs"]
    assert out[0]["logprobs"][0] == {"token": "Hello", "logprob": -0.1, "bytes": list(b"Hello")}
    sent = server.script.requests[-1]
    assert (sent.logprobs, sent.top_logprobs) == (True, 0)


def test_unstreamed_generate_has_every_logprob_last(server: ScriptedServer) -> None:
    body = {"prompt": "hi", "logprobs": True, "top_logprobs": 3, "stream": False}
    out = post(server, "/api/generate", body).json()
    assert out["response"] == "Hello world"
    assert out["logprobs"] == expected(3)
    assert list(out)[-1] == "logprobs"
    top = out["logprobs"][1]["top_logprobs"]
    assert [t["token"] for t in top] == [" wor", "alt1", "alt2"]


def test_streamed_chat_carries_each_chunks_logprobs(server: ScriptedServer) -> None:
    out = lines(post(server, "/api/chat", {"messages": ASK, "logprobs": True, "top_logprobs": 2}))
    assert [o["logprobs"] for o in out[:-1]] == [[entry] for entry in expected(2)]
    assert list(out[0]) == ["model", "created_at", "message", "done", "logprobs"]
    assert "logprobs" not in out[-1]


def test_unstreamed_chat_has_every_logprob_before_the_stats(server: ScriptedServer) -> None:
    body = {"messages": ASK, "logprobs": True, "stream": False}
    out = post(server, "/api/chat", body).json()
    assert out["message"]["content"] == "Hello world"
    assert out["logprobs"] == expected(0)
    keys = list(out)
    assert keys.index("done_reason") + 1 == keys.index("logprobs") < keys.index("total_duration")


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_without_logprobs_the_runner_computes_none(server: ScriptedServer, path: str) -> None:
    body = {"prompt": "hi", "messages": ASK, "top_logprobs": 5}
    assert all("logprobs" not in o for o in lines(post(server, path, body)))
    assert server.script.requests[-1].logprobs is False


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
@pytest.mark.parametrize("top", [-1, 21])
def test_top_logprobs_outside_0_to_20_is_a_400(server: ScriptedServer, path: str, top: int) -> None:
    body = {"prompt": "hi", "messages": ASK, "logprobs": True, "top_logprobs": top}
    response = post(server, path, body)
    assert response.status_code == 400
    assert response.json() == {"error": "top_logprobs must be between 0 and 20"}
    assert not server.script.requests


def test_the_ollama_client_reads_logprobs(server: ScriptedServer) -> None:
    client = ollama.Client(host=server.url)
    reply = client.chat(model=MODEL, messages=ASK, logprobs=True, top_logprobs=2)
    assert reply.logprobs is not None
    assert [lp.token for lp in reply.logprobs] == CHUNKS
    assert [lp.logprob for lp in reply.logprobs] == [-0.1, -0.2, -0.3]
    generated = client.generate(model=MODEL, prompt="hi", logprobs=True)
    assert generated.logprobs is not None and len(generated.logprobs) == 3


# ----------------------------------------------------------------------------- truncate, shift

LONG = [{"role": "user", "content": "word " * 40}, {"role": "user", "content": "hi"}]


def test_truncate_false_refuses_a_conversation_longer_than_num_ctx(
    server: ScriptedServer,
) -> None:
    body = {"messages": LONG, "options": {"num_ctx": 16}, "truncate": False}
    response = post(server, "/api/chat", body)
    assert response.status_code == 400
    assert response.json() == {"error": "the input length exceeds the context length"}
    assert server.script.requests[-1].truncate is False


def test_by_default_the_oldest_turns_are_dropped_instead(server: ScriptedServer) -> None:
    lines(post(server, "/api/chat", {"messages": LONG, "options": {"num_ctx": 16}}))
    sent = server.script.requests[-1]
    assert sent.truncate is True and "word" not in sent.prompt


def test_truncate_false_refuses_a_generate_prompt_longer_than_num_ctx(
    server: ScriptedServer,
) -> None:
    body = {"prompt": "word " * 40, "options": {"num_ctx": 16}, "truncate": False}
    response = post(server, "/api/generate", {**body, "stream": False})
    assert response.status_code == 400
    assert response.json() == {"error": "the input length exceeds the context length"}


@pytest.mark.parametrize(("shift", "sent"), [(False, False), (True, True), (None, True)])
def test_shift_reaches_the_runner(server: ScriptedServer, shift: bool | None, sent: bool) -> None:
    body: dict[str, Any] = {"messages": ASK} if shift is None else {"messages": ASK, "shift": shift}
    lines(post(server, "/api/chat", body))
    assert server.script.requests[-1].shift is sent


@pytest.mark.parametrize("field", ["truncate", "shift", "logprobs"])
def test_switches_must_be_booleans(server: ScriptedServer, field: str) -> None:
    response = post(server, "/api/chat", {"messages": ASK, field: "yes"})
    assert response.status_code == 400 and field in response.json()["error"]


# ----------------------------------------------------------------------------- OpenAI


def client(server: ScriptedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0)


def test_openai_chat_logprobs_in_openais_shape(server: ScriptedServer) -> None:
    reply = client(server).chat.completions.create(
        model=MODEL, messages=ASK, logprobs=True, top_logprobs=2
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [t.token for t in logprobs.content] == CHUNKS
    assert [t.logprob for t in logprobs.content] == [-0.1, -0.2, -0.3]
    assert logprobs.content[0].bytes == list(b"Hello")
    assert [t.token for t in logprobs.content[0].top_logprobs] == ["Hello", "alt1"]
    sent = server.script.requests[-1]
    assert (sent.logprobs, sent.top_logprobs) == (True, 2)


def test_openai_streamed_chat_logprobs_ride_on_their_chunks(server: ScriptedServer) -> None:
    stream = client(server).chat.completions.create(
        model=MODEL, messages=ASK, logprobs=True, stream=True
    )
    tokens = [
        [t.token for t in chunk.choices[0].logprobs.content or []]
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs is not None
    ]
    assert tokens == [["Hello"], [" wor"], ["ld"]]


def test_openai_chat_without_logprobs_has_none(server: ScriptedServer) -> None:
    reply = client(server).chat.completions.create(model=MODEL, messages=ASK)
    assert reply.choices[0].logprobs is None
    assert server.script.requests[-1].logprobs is False


def test_openai_top_logprobs_over_20_is_a_400(server: ScriptedServer) -> None:
    with pytest.raises(openai.BadRequestError, match="top_logprobs must be between 0 and 20"):
        client(server).chat.completions.create(
            model=MODEL, messages=ASK, logprobs=True, top_logprobs=21
        )


def test_openai_completion_logprobs_in_the_legacy_shape(server: ScriptedServer) -> None:
    reply = client(server).completions.create(model=MODEL, prompt="hi", logprobs=2, echo=True)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == CHUNKS
    assert logprobs.token_logprobs == [-0.1, -0.2, -0.3]
    assert logprobs.text_offset == [2, 7, 11]  # after the echoed "hi"
    assert logprobs.top_logprobs == [{t: -0.1, "alt1": -1.1} for t in ["Hello"]] + [
        {" wor": -0.2, "alt1": -1.2},
        {"ld": -0.3, "alt1": -1.3},
    ]
    assert server.script.requests[-1].top_logprobs == 2


def test_openai_streamed_completion_offsets_count_from_the_start(server: ScriptedServer) -> None:
    stream = client(server).completions.create(model=MODEL, prompt="hi", logprobs=0, stream=True)
    got = [
        (chunk.choices[0].logprobs.tokens, chunk.choices[0].logprobs.text_offset)
        for chunk in stream
        if chunk.choices[0].logprobs is not None
    ]
    assert got == [(["Hello"], [0]), ([" wor"], [5]), (["ld"], [9])]


def test_native_and_openai_carry_the_same_values(server: ScriptedServer) -> None:
    native = post(
        server,
        "/api/generate",
        {"prompt": "hi", "logprobs": True, "top_logprobs": 1, "stream": False},
    ).json()["logprobs"]
    reply = httpx.post(
        f"{server.url}/v1/completions",
        json={"model": MODEL, "prompt": "hi", "logprobs": 1},
        timeout=30,
    ).json()
    assert reply["choices"][0]["logprobs"]["content"] == native


# ----------------------------------------------------------------------------- removed options


def test_options_ollama_removed_are_ignored(server: ScriptedServer) -> None:
    removed = {"mirostat": 2, "mirostat_tau": "x", "penalize_newline": 1, "use_mlock": True}
    lines(post(server, "/api/chat", {"messages": ASK, "options": removed}))
    options = server.script.requests[-1].options
    assert options.repeat_penalty == 1.0  # Ollama's current default
    assert not hasattr(options, "mirostat")


def test_create_drops_deprecated_parameters(server: ScriptedServer) -> None:
    body = {"model": "derived", "from": MODEL, "parameters": {"mirostat": 1, "top_k": 3}}
    created = httpx.post(f"{server.url}/api/create", json={**body, "stream": False}, timeout=30)
    assert created.status_code == 200, created.text
    shown = httpx.post(f"{server.url}/api/show", json={"model": "derived"}, timeout=30).json()
    assert "top_k" in shown["parameters"] and "mirostat" not in shown["parameters"]
