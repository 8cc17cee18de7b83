"""Parallel requests and several loaded models, through a real server and real runners."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest

from ollamapy.config import Config, parse_host
from ollamapy.llm import ProcessRunner
from ollamapy.scheduler import ModelLoad
from ollamapy.server.runners import default_scheduler, runner_factory
from tests.conftest import bundled_model_file
from tests.scheduler.live import CHATML, LiveApp, create_model, serve_app, stream_lines, wait_until
from tests.server.conftest import free_port

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
GEMMA = "gemma3:270m"
GREEDY = {"temperature": 0, "num_predict": 16, "seed": 1}
PROMPTS = ("Name three colors.", "Count to five.", "What is the sun?", "Say hello.")

Factory = Callable[[ModelLoad], Awaitable[ProcessRunner]]


class LoadGate:
    """Holds loads of one model at a gate, so a test can order events without timing."""

    def __init__(self) -> None:
        self.model = ""
        self.opened = threading.Event()
        self.opened.set()
        self.entered = threading.Event()

    def wrap(self, factory: Factory) -> Factory:
        async def gated(load: ModelLoad) -> ProcessRunner:
            if load.name == self.model:
                self.entered.set()
                await asyncio.to_thread(self.opened.wait, 120)
            return await factory(load)

        return gated


@pytest.fixture(scope="module")
def gate() -> LoadGate:
    return LoadGate()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gate: LoadGate) -> Iterator[LiveApp]:
    """One server with OLLAMA_NUM_PARALLEL=2 and both bundled models created through the API."""
    config = Config(
        host=parse_host(f"127.0.0.1:{free_port()}"),
        models_dir=tmp_path_factory.mktemp("models"),
        num_parallel=2,
        context_length=2048,
    )
    scheduler = default_scheduler(config, gate.wrap(runner_factory(config)))
    for live in serve_app(config, scheduler):
        create_model(live.url, SMOL, bundled_model_file("smollm2"), CHATML)
        create_model(live.url, GEMMA, bundled_model_file("gemma3"))
        yield live


def generate_text(url: str, model: str, prompt: str) -> str:
    lines = stream_lines(url, {"model": model, "prompt": prompt, "options": GREEDY})
    assert lines[-1]["done"] is True, lines[-1]
    return "".join(line["response"] for line in lines)


def ps(url: str) -> list[dict[str, object]]:
    models: list[dict[str, object]] = httpx.get(f"{url}/api/ps").json()["models"]
    return models


def test_parallel_greedy_streams_match_their_solo_runs(server: LiveApp) -> None:
    alone = [generate_text(server.url, SMOL, prompt) for prompt in PROMPTS]
    assert all(alone)
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: generate_text(server.url, SMOL, p), PROMPTS))
    assert together == alone
    (loaded,) = [e for e in server.scheduler.loaded() if e.load.name == SMOL]
    assert loaded.load.num_parallel == 2 and loaded.runner.info.n_parallel == 2


def test_concurrent_chats_with_one_system_prompt_evaluate_it_once(server: LiveApp) -> None:
    system = (
        "You are the harbour master's assistant. Answer in one short line, name the tide "
        "when it matters, and never guess a ship's arrival time. [concurrent-system]"
    )

    def evaluated_for(question: str) -> int:
        """Prompt tokens evaluated for one chat: the whole prompt less its cached part, as
        `/v1` reports them (the native API, like Ollama's, counts the whole prompt only)."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        body = {"model": SMOL, "messages": messages, "temperature": 0, "max_tokens": 16}
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        return int(usage["prompt_tokens"]) - int(usage["prompt_tokens_details"]["cached_tokens"])

    questions = ["When is high tide?", "Which berth is free?"]
    with ThreadPoolExecutor(len(questions)) as pool:
        evaluated = list(pool.map(evaluated_for, questions))
    # The system turn is about 40 tokens: one of the two evaluates it, the other copies it.
    assert max(evaluated) > 40 and min(evaluated) < 20, evaluated


def test_two_models_loaded_at_once_appear_in_ps(server: LiveApp) -> None:
    generate_text(server.url, SMOL, "Hi")
    generate_text(server.url, GEMMA, "Hi")
    models = {m["name"]: m for m in ps(server.url)}
    assert set(models) == {SMOL, GEMMA}
    for name, key in ((SMOL, "smollm2"), (GEMMA, "gemma3")):
        entry = models[name]
        assert entry["model"] == name
        assert isinstance(entry["size"], int)
        assert entry["size"] > bundled_model_file(key).stat().st_size  # weights + KV + compute
        assert entry["size_vram"] == 0
        assert isinstance(entry["digest"], str) and len(entry["digest"]) == 64
        details = entry["details"]
        assert isinstance(details, dict) and details["format"] == "gguf"
        assert details["family"] in ("llama", "gemma3")
        assert entry["context_length"] == 2048  # per sequence, not 2048 x num_parallel
        expires = datetime.fromisoformat(str(entry["expires_at"]).replace("Z", "+00:00"))
        assert expires.year >= 2024


def test_loaded_model_is_served_while_another_model_loads(server: LiveApp, gate: LoadGate) -> None:
    generate_text(server.url, SMOL, "Hi")  # SmolLM2 is loaded
    httpx.post(f"{server.url}/api/generate", json={"model": GEMMA, "keep_alive": 0}, timeout=60)
    assert wait_until(lambda: all(m["name"] != GEMMA for m in ps(server.url)))
    gate.model, gate.entered = GEMMA, threading.Event()
    gate.opened.clear()
    try:
        with ThreadPoolExecutor(1) as pool:
            gemma = pool.submit(generate_text, server.url, GEMMA, "Hi")
            assert gate.entered.wait(60), "the Gemma load never started"
            smol = generate_text(server.url, SMOL, "Say hello.")  # Gemma is still loading
            assert smol and not gemma.done()
            gate.opened.set()
            assert gemma.result(timeout=180)
    finally:
        gate.opened.set()
        gate.model = ""


def test_keep_alive_expiry_unloads_the_model(server: LiveApp) -> None:
    body = {"model": SMOL, "prompt": "Hi", "keep_alive": "1s", "options": GREEDY}
    response = httpx.post(f"{server.url}/api/generate", json={**body, "stream": False}, timeout=120)
    assert response.status_code == 200, response.text
    assert wait_until(lambda: all(m["name"] != SMOL for m in ps(server.url)), timeout=10)
