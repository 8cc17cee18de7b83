"""`GET /metrics`: Prometheus's text format, fed by the requests, the completion path and the
scheduler, through the real app with the scripted runner."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ollamapy.scheduler import ModelLoad, Scheduler
from ollamapy.server.metrics import Metrics
from ollamapy.types import RunnerOptions
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, Script(chunks=["Hello", " there", " friend"], cached=3))


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def chat(url: str, model: str = MODEL, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(f"{url}/api/chat", json=body, timeout=30)


def test_requests_are_counted_by_route_template_method_model_and_status(
    server: ScriptedServer,
) -> None:
    assert chat(server.url).status_code == 200
    assert chat(server.url).status_code == 200
    assert chat(server.url, model="nowhere:latest").status_code == 404
    assert httpx.head(f"{server.url}/api/blobs/sha256:{'0' * 64}").status_code == 404
    assert httpx.get(f"{server.url}/no/such/path").status_code == 404
    samples = scrape(server.url)
    requests = "ollama_requests_total"
    labels = {"route": "/api/chat", "method": "POST"}
    assert value(samples, requests, **labels, model=MODEL, status="200") == 2
    assert value(samples, requests, **labels, model="", status="404") == 1
    blob = {"route": "/api/blobs/{digest}", "method": "HEAD", "model": "", "status": "404"}
    assert value(samples, requests, **blob) == 1
    catch_all = {"route": "/{path:path}", "method": "GET", "model": "", "status": "404"}
    assert value(samples, requests, **catch_all) == 1
    latency = "ollama_request_duration_seconds_count"
    assert value(samples, latency, route="/api/chat", model=MODEL) == 2


def test_a_name_the_client_made_up_never_becomes_a_label(server: ScriptedServer) -> None:
    for i in range(5):
        chat(server.url, model=f"made-up-{i}:latest")
    text = httpx.get(f"{server.url}/metrics").text
    assert "made-up" not in text


def test_completion_tokens_speed_first_token_and_cache_hits(server: ScriptedServer) -> None:
    answer = chat(server.url, stream=True)
    lines = [line for line in answer.text.splitlines() if line]
    final = httpx.Response(200, content=lines[-1]).json()
    samples = scrape(server.url)
    assert value(samples, "ollama_prompt_tokens_total", model=MODEL) == final["prompt_eval_count"]
    assert value(samples, "ollama_generated_tokens_total", model=MODEL) == final["eval_count"] == 3
    assert value(samples, "ollama_prompt_cached_tokens_total", model=MODEL) == 3
    assert value(samples, "ollama_prompt_cache_hits_total", model=MODEL) == 1
    assert value(samples, "ollama_time_to_first_token_seconds_count", model=MODEL) == 1
    assert value(samples, "ollama_tokens_per_second_count", model=MODEL) == 1
    assert value(samples, "ollama_queue_wait_seconds_count", model=MODEL) == 1


def test_openai_requests_are_counted_on_the_same_path(server: ScriptedServer) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{server.url}/v1/chat/completions", json=body).status_code == 200
    samples = scrape(server.url)
    route = {"route": "/v1/chat/completions", "method": "POST", "model": MODEL, "status": "200"}
    assert value(samples, "ollama_requests_total", **route) == 1
    assert value(samples, "ollama_generated_tokens_total", model=MODEL) == 3


def test_loaded_models_show_their_memory_and_runner_starts_and_stops(
    server: ScriptedServer,
) -> None:
    chat(server.url)
    samples = scrape(server.url)
    assert value(samples, "ollama_loaded_models") == 1
    assert value(samples, "ollama_runner_starts_total", model=MODEL) == 1
    assert value(samples, "ollama_model_memory_bytes", model=MODEL, kind="total") > 0
    assert value(samples, "ollama_model_active_requests", model=MODEL) == 0
    stop = httpx.post(f"{server.url}/api/generate", json={"model": MODEL, "keep_alive": 0})
    assert stop.status_code == 200
    samples = scrape(server.url)
    assert value(samples, "ollama_runner_stops_total", model=MODEL, reason="unload") == 1
    assert value(samples, "ollama_loaded_models") == 0


def test_a_runner_that_died_is_counted_as_a_crash(server: ScriptedServer) -> None:
    chat(server.url)
    (entry,) = server.live.scheduler.loaded()
    entry.runner.closed = True  # the scripted process "exits"
    assert chat(server.url).status_code == 200
    samples = scrape(server.url)
    assert value(samples, "ollama_runner_crashes_total", model=MODEL) == 1
    assert value(samples, "ollama_runner_starts_total", model=MODEL) == 2


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    first, second = Metrics(), Metrics()
    first.runner_starts.labels("a").inc()
    assert b'ollama_runner_starts_total{model="a"} 1.0' in first.exposition()
    assert b'model="a"' not in second.exposition()


# ----------------------------------------------------------------------------- scheduler


class Runner:
    def __init__(self) -> None:
        self.alive = True

    async def close(self) -> None:
        self.alive = False


def model(name: str) -> ModelLoad:
    return ModelLoad(name, Path(f"/blobs/{name}"), f"sha256:{name}", RunnerOptions())


async def test_an_idle_runner_unloaded_for_another_model_is_an_eviction() -> None:
    async def factory(load: ModelLoad) -> Runner:
        return Runner()

    scheduler: Scheduler[Runner] = Scheduler(factory, default_keep_alive=300, max_loaded=1)
    metrics = Metrics()
    metrics.watch(scheduler)
    await scheduler.load(model("a"))
    await scheduler.load(model("b"))
    text = metrics.exposition().decode()
    assert 'ollama_runner_evictions_total{model="a"} 1.0' in text
    assert 'ollama_runner_stops_total{model="a",reason="evicted"} 1.0' in text
    assert 'ollama_runner_starts_total{model="b"} 1.0' in text
    await scheduler.shutdown()
    assert 'reason="shutdown"' in metrics.exposition().decode()


async def test_a_failed_load_is_counted_and_queue_depth_shows_waiting_requests() -> None:
    release = asyncio.Event()

    async def factory(load: ModelLoad) -> Runner:
        await release.wait()
        raise RuntimeError("no such file")

    scheduler: Scheduler[Runner] = Scheduler(factory, default_keep_alive=300)
    metrics = Metrics()
    metrics.watch(scheduler)
    waiting = [asyncio.create_task(scheduler.load(model("a"))) for _ in range(3)]
    await asyncio.sleep(0.05)
    scheduler.report_progress(model("a").key, 0.5)
    text = metrics.exposition().decode()
    assert 'ollama_queue_depth{model="a"} 3.0' in text
    assert 'ollama_model_load_progress{model="a"} 0.5' in text
    assert "ollama_requests_pending 3.0" in text
    release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    text = metrics.exposition().decode()
    assert 'ollama_runner_load_failures_total{model="a"} 1.0' in text
    assert "ollama_requests_pending 0.0" in text
    await scheduler.shutdown()


async def test_an_observer_that_raises_never_breaks_scheduling() -> None:
    class Broken:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("observer bug")

    async def factory(load: ModelLoad) -> Runner:
        return Runner()

    scheduler: Scheduler[Runner] = Scheduler(factory, default_keep_alive=300)
    scheduler.observe(Broken())  # type: ignore[arg-type]
    entry = await scheduler.load(model("a"))
    assert entry.runner.alive
    await scheduler.shutdown()
