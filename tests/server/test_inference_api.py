"""Generation through a real server, the real llama.cpp runner and the bundled SmolLM2."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import ollama
import pytest

from tests.conftest import bundled_model_file
from tests.server.conftest import SMOLLM2_MODELFILE, LiveServer, serve_with_model

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
GREEDY = {"temperature": 0, "num_predict": 24, "seed": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module, with the bundled SmolLM2 created through the API."""
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{SMOLLM2_MODELFILE}"
    yield from serve_with_model(tmp_path_factory, MODEL, modelfile)


@pytest.fixture
def client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


def test_generate_greedy_is_reproducible_with_measured_stats(client: ollama.Client) -> None:
    first = client.generate(model=MODEL, prompt="Name three colors.", options=GREEDY)
    second = client.generate(model=MODEL, prompt="Name three colors.", options=GREEDY)
    assert first.response and first.response == second.response
    assert first.done and first.done_reason in ("stop", "length")
    assert first.eval_count and 0 < first.eval_count <= 24
    assert first.prompt_eval_count and first.prompt_eval_count > 0
    assert first.eval_duration and first.eval_duration > 0
    assert first.total_duration and first.total_duration >= first.eval_duration
    assert first.context and len(first.context) >= first.eval_count


def test_num_predict_is_exact(client: ollama.Client) -> None:
    result = client.generate(
        model=MODEL, prompt="Tell me a long story.", options={"temperature": 0, "num_predict": 5}
    )
    assert result.eval_count == 5
    assert result.done_reason == "length"


def test_stop_sequence_is_never_emitted(client: ollama.Client) -> None:
    free = client.generate(model=MODEL, prompt="Count from 1 to 10.", options=GREEDY).response
    middle = len(free) // 2
    stop = free[middle : middle + 3]
    assert len(stop) == 3
    cut = client.generate(
        model=MODEL, prompt="Count from 1 to 10.", options={**GREEDY, "stop": [stop]}
    )
    assert cut.response == free[: free.index(stop)]
    assert cut.done_reason == "stop"


def test_same_seed_same_sample(client: ollama.Client) -> None:
    options = {"temperature": 0.9, "seed": 42, "num_predict": 16}
    runs = [client.generate(model=MODEL, prompt="A poem:", options=options) for _ in range(2)]
    assert runs[0].response == runs[1].response


def test_chat_streams_like_ollama(client: ollama.Client) -> None:
    parts = list(
        client.chat(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            stream=True,
            options=GREEDY,
        )
    )
    assert len(parts) > 2
    assert all(p.message.role == "assistant" for p in parts)
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content or "" for p in parts).strip()
    assert parts[-1].eval_count == len(parts) - 1 or parts[-1].eval_count


def test_json_schema_format_yields_valid_json(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    result = client.generate(
        model=MODEL,
        prompt="Describe a person as JSON with name and age.",
        format=schema,
        options={"temperature": 0, "num_predict": 64},
    )
    jsonschema.validate(json.loads(result.response), schema)


def test_format_json_yields_json(client: ollama.Client) -> None:
    result = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 2+2? Answer as JSON with key answer."}],
        format="json",
        # Ollama's default repeat_penalty is 1.0 now; without a penalty this tiny model's
        # greedy JSON nests {"type": "json", "data": {...}} until num_predict
        options={"temperature": 0, "num_predict": 128, "repeat_penalty": 1.1},
    )
    assert result.done_reason == "stop"
    assert isinstance(json.loads(result.message.content or ""), dict)


def test_debug_render_only_returns_the_prompt(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/chat",
        json={
            "model": MODEL,
            "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
            "_debug_render_only": True,
        },
    )
    rendered = response.json()["debug_info"]["rendered_template"]
    assert rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n" + (
        "<|im_start|>assistant\n"
    )


def test_keep_alive_load_and_unload(client: ollama.Client) -> None:
    loaded = client.generate(model=MODEL, prompt="")
    assert loaded.done_reason == "load"
    assert [m.model for m in client.ps().models] == [MODEL]
    unloaded = client.generate(model=MODEL, prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert client.ps().models == []
    chat_loaded = client.chat(model=MODEL, messages=[])
    assert chat_loaded.done_reason == "load"


def test_raw_mode_skips_the_template(server: LiveServer) -> None:
    body = {"model": MODEL, "prompt": "U", "raw": True, "_debug_render_only": True}
    rendered = httpx.post(f"{server.url}/api/generate", json=body).json()
    assert rendered["debug_info"]["rendered_template"] == "U"


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/api/generate", {"model": "missing", "prompt": "x"}, 404, "not found"),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "x", "options": {"temperature": "hot"}},
            400,
            "temperature",
        ),
        ("/api/generate", {"model": MODEL, "prompt": "x", "format": "yaml"}, 400, "format"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "suffix": "y"}, 400, "insert"),
        ("/api/generate", {"model": MODEL, "prompt": "x", "images": ["aGk="]}, 400, "images"),
        (
            "/api/chat",
            {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "role",
        ),
        ("/api/chat", {"model": MODEL, "messages": "hi"}, 400, "messages"),
        ("/api/chat", {"model": MODEL, "messages": [], "keep_alive": "forever"}, 400, "duration"),
        (
            "/api/chat",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            400,
            "tools",
        ),
    ],
    ids=[
        "unknown-model",
        "bad-option-type",
        "bad-format",
        "no-insert",
        "no-vision",
        "unknown-role",
        "messages-not-list",
        "bad-keep-alive",
        "no-tools",
    ],
)
def test_bad_requests(
    server: LiveServer, path: str, body: dict[str, object], status: int, fragment: str
) -> None:
    response = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_unknown_option_is_ignored(client: ollama.Client) -> None:
    result = client.generate(
        model=MODEL, prompt="Hi", options={"num_predict": 2, "not_an_option": 1}
    )
    assert result.eval_count == 2


def openai_sdk(server: LiveServer) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", timeout=120)


def test_prefix_cache_evaluates_only_new_tokens(server: LiveServer) -> None:
    """The next turn of a chat reuses the cached conversation: the whole prompt is counted
    and the earlier turn is reported as cached."""
    sdk = openai_sdk(server)
    history: list[Any] = [{"role": "user", "content": "Tell me about the moon in two sentences."}]
    first = sdk.chat.completions.create(model=MODEL, messages=history, max_tokens=24, temperature=0)
    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And the sun?"},
    ]
    second = sdk.chat.completions.create(
        model=MODEL, messages=history, max_tokens=24, temperature=0
    )
    assert first.usage is not None and second.usage is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens <= cached < second.usage.prompt_tokens


def test_a_cached_prompt_is_counted_whole_natively(server: LiveServer) -> None:
    """Ollama counts the whole prompt in `prompt_eval_count`, cached or not, and has no
    field for the cached part: the native answers, whole or streamed, carry none."""
    body = {
        "model": MODEL,
        "prompt": "[native-count] What is the capital of France?",
        "options": {"temperature": 0, "num_predict": 2},
    }
    whole = httpx.post(f"{server.url}/api/generate", json={**body, "stream": False}, timeout=60)
    assert whole.status_code == 200, whole.text
    with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=60) as response:
        streamed = [json.loads(line) for line in response.iter_lines() if line][-1]
    first, second = whole.json(), streamed
    assert first["prompt_eval_count"] == second["prompt_eval_count"] > 10
    assert "prompt_cached_count" not in first and "prompt_cached_count" not in second


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_openai_usage_counts_the_whole_prompt_and_reports_the_cached_part(
    server: LiveServer, kind: str
) -> None:
    """LangChain and others read `usage.prompt_tokens` as the input size: a repeated
    request must not shrink to the uncached tail."""
    sdk = openai_sdk(server)
    question = f"[usage-{kind}] Which planet is known as the red planet?"

    def usage() -> Any:
        if kind == "chat":
            messages: Any = [{"role": "user", "content": question}]
            reply: Any = sdk.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=2, temperature=0
            )
        else:
            reply = sdk.completions.create(
                model=MODEL, prompt=question, max_tokens=2, temperature=0
            )
        assert reply.usage is not None
        return reply.usage

    first, second = usage(), usage()
    assert first.prompt_tokens == second.prompt_tokens > 10
    assert second.prompt_tokens_details is not None
    assert second.prompt_tokens_details.cached_tokens == second.prompt_tokens - 1
    assert first.prompt_tokens_details.cached_tokens < first.prompt_tokens // 2


def test_created_model_has_no_path_outside_store(server: LiveServer, tmp_path: Path) -> None:
    listed = ollama.Client(host=server.url).list().models
    assert [m.model for m in listed] == [MODEL]


def test_openai_sdk_chat_and_completions_against_the_real_model(server: LiveServer) -> None:
    import openai

    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    reply = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens <= 8
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content
    assert chunks[-1].usage is not None
    completion = sdk.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=4, temperature=0)
    assert completion.choices[0].text
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])


@pytest.fixture(scope="module")
def single_slot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose runner has ONE slot, so an abandoned generation would block the next."""
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{SMOLLM2_MODELFILE}"
    yield from serve_with_model(tmp_path_factory, MODEL, modelfile, num_parallel=1)


def test_client_disconnect_frees_the_runner(single_slot_server: LiveServer) -> None:
    """Closing a stream mid-generation stops it: the next request is not stuck behind it."""
    server = single_slot_server
    body = {"model": MODEL, "prompt": "Write a very long essay.", "options": {"num_predict": 4000}}
    with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(3):
            assert json.loads(next(lines))["done"] is False
    quick = httpx.post(
        f"{server.url}/api/generate",
        json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}},
        timeout=15,
    )
    assert quick.status_code == 200
    assert quick.json()["eval_count"] == 3


def test_long_history_is_truncated_to_num_ctx(client: ollama.Client) -> None:
    """Old turns are dropped so the prompt fits; the system message and last turn stay."""
    filler = " ".join(f"word{i}" for i in range(120))
    history: list[dict[str, str]] = [{"role": "system", "content": "Be brief."}]
    for turn in range(6):
        history += [
            {"role": "user", "content": f"Turn {turn}: {filler}"},
            {"role": "assistant", "content": f"Noted {turn}."},
        ]
    history.append({"role": "user", "content": "Say OK."})
    options = {"num_ctx": 512, "num_predict": 4, "temperature": 0}
    result = client.chat(model=MODEL, messages=history, options=options)
    assert result.prompt_eval_count is not None and 0 < result.prompt_eval_count <= 512
    full = client.chat(model=MODEL, messages=history, options={**options, "num_ctx": 4096})
    assert full.prompt_eval_count is not None and full.prompt_eval_count > 512


def test_request_checks_run_off_the_event_loop(
    client: ollama.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first check of a model reads its GGUF header (tens of ms for a large
    vocabulary): done on the event loop, it would stall every other stream meanwhile."""
    from ollamapy.server import prompts

    where: list[str] = []

    def spy(check: Callable[..., None]) -> Callable[..., None]:
        def checked(*args: object) -> None:
            try:
                asyncio.get_running_loop()
                where.append("event loop")
            except RuntimeError:
                where.append("worker thread")
            check(*args)

        return checked

    monkeypatch.setattr(prompts, "check_generate", spy(prompts.check_generate))
    monkeypatch.setattr(prompts, "check_chat", spy(prompts.check_chat))
    client.generate(model=MODEL, prompt="Hi", options={"num_predict": 1})
    client.chat(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 1}
    )
    assert where == ["worker thread", "worker thread"]
