"""The page against a real `ollama serve` with the bundled SmolLM2, in headless Chromium:
a streamed answer, stop (and the server's runner goes idle), a reload that keeps the
conversation, pull from a local `docker-registry` with progress to 100%, copy, details,
delete, what is loaded and unload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from ollamapy.config import Config, parse_host
from tests.conftest import bundled_model_file
from tests.registry.servers import Proxy, Registry, run_proxy, run_registry
from tests.scheduler.live import CHATML, LiveApp, create_model, runner_pids, serve_app
from tests.server.conftest import free_port
from tests.server.test_cancel import cpu_rate, goes_idle
from tests.ui.conftest import Tab, screenshot

pytestmark = pytest.mark.integration

SMOL = "smollm2:135m"
COUNTER = "counter:latest"
COUNTING = " ".join(str(n) for n in range(100, 116))
"""A bare count the counter model keeps continuing until num_predict (4000)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """SmolLM2 twice: as a short-answering chat model, and as a counter that never stops
    by itself (a bare template, no stop words); one slot each."""
    config = Config(
        host=parse_host(f"127.0.0.1:{free_port()}"),
        models_dir=tmp_path_factory.mktemp("models"),
        num_parallel=1,
        context_length=2048,
    )
    gguf = bundled_model_file("smollm2")
    for live in serve_app(config):
        create_model(live.url, SMOL, gguf, f"{CHATML}PARAMETER num_predict 24\n")
        bare = 'TEMPLATE "{{ range .Messages }}{{ .Content }}{{ end }}"\n'
        create_model(live.url, COUNTER, gguf, f"{bare}PARAMETER num_predict 4000\n")
        yield live


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from run_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def slow_proxy(registry: Registry) -> Iterator[Proxy]:
    """The registry behind a proxy that slows blob bodies, so a pull of the 100 MB model
    takes seconds and its progress is seen on the way."""
    proxy = Proxy(registry.host)
    proxy.script.slow_blobs = 0.002
    yield from run_proxy(proxy)


@pytest.fixture
def empty_server(tmp_path: Path) -> Iterator[LiveApp]:
    """A second server with an empty store: every blob of a pull is downloaded."""
    config = Config(host=parse_host(f"127.0.0.1:{free_port()}"), models_dir=tmp_path / "models")
    yield from serve_app(config)


def open_page(tab: Tab, url: str, view: str = "chat") -> Page:
    tab.page.goto(f"{url}/ui/#{view}")
    expect(tab.page.locator("body[data-ready='true']")).to_be_attached()
    return tab.page


def record_streaming_lengths(page: Page) -> None:
    """Keep, in `window.lengths`, the answer's text length at every change while it streams."""
    page.evaluate(
        """() => {
            window.lengths = [];
            new MutationObserver(() => {
                const node = document.querySelector('.msg.assistant.streaming .content');
                if (node) window.lengths.push(node.textContent.length);
            }).observe(document.querySelector('#messages'),
                       { childList: true, subtree: true, characterData: true });
        }"""
    )


def send(page: Page, model: str, text: str) -> None:
    page.get_by_label("Model", exact=True).select_option(model)
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_role("button", name="Send").click()


def loaded(url: str) -> list[str]:
    return [m["name"] for m in httpx.get(f"{url}/api/ps", timeout=30).json()["models"]]


def unload_all(url: str) -> None:
    for name in loaded(url):
        httpx.post(f"{url}/api/generate", json={"model": name, "keep_alive": 0}, timeout=60)


def test_an_answer_streams_and_the_conversation_survives_a_reload(
    tab: Tab, server: LiveApp
) -> None:
    page = open_page(tab, server.url)
    record_streaming_lengths(page)
    send(page, SMOL, "Write one sentence about the sea.")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".stats")).to_contain_text("tokens/s", timeout=240_000)
    expect(answer.locator(".stats")).to_contain_text("TTFT")
    text = answer.locator(".content").inner_text()
    assert text.strip()
    lengths = page.evaluate("window.lengths")
    assert len({n for n in lengths if n > 0}) >= 2, lengths  # shown in pieces as it came
    screenshot(page, "chat")

    page.reload()
    expect(page.locator("body[data-ready='true']")).to_be_attached()
    page.get_by_label("Search conversations").fill("the sea")
    sidebar = page.get_by_role("list", name="Saved conversations")
    sidebar.get_by_role("button", name="Write one sentence about the sea.", exact=True).click()
    expect(page.locator(".msg.user .content")).to_have_text("Write one sentence about the sea.")
    expect(page.locator(".msg.assistant .content")).to_have_text(text)


def test_stop_ends_the_stream_and_the_server_cancels_the_generation(
    tab: Tab, server: LiveApp
) -> None:
    unload_all(server.url)
    page = open_page(tab, server.url)
    send(page, COUNTER, COUNTING)
    streaming = page.locator(".msg.assistant.streaming .content")
    expect(streaming).to_contain_text("1", timeout=120_000)  # tokens are coming
    (pid,) = _runners_of(server)  # the counter's only (smollm2 was unloaded)
    busy = cpu_rate(pid, 0.5)
    assert busy > 0.1, f"the runner was not generating ({busy:.2f} cores)"
    page.get_by_role("button", name="Stop").click()
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".stats")).to_contain_text("stopped")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    idle, rates = goes_idle(pid, busy)
    assert idle, f"the runner kept using {rates} cores after Stop ({busy:.2f} before)"
    quick = httpx.post(  # its only slot is free at once
        f"{server.url}/api/generate",
        json={"model": COUNTER, "prompt": COUNTING, "stream": False, "options": {"num_predict": 2}},
        timeout=30,
    )
    assert quick.json()["eval_count"] == 2


def _runners_of(server: LiveApp) -> set[int]:
    models = str(server.app.state.ollama.config.models_dir).encode()
    return {p for p in runner_pids() if models in Path(f"/proc/{p}/cmdline").read_bytes()}


def test_pull_from_a_registry_shows_progress_to_100(
    tab: Tab, server: LiveApp, registry: Registry, slow_proxy: Proxy, empty_server: LiveApp
) -> None:
    """`server` publishes SmolLM2 to the registry; the page pulls it into `empty_server`."""
    name = f"{registry.host}/library/smol:latest"
    modelfile = f"FROM {bundled_model_file('smollm2')}\n{CHATML}"
    created = httpx.post(
        f"{server.url}/api/create",
        json={"model": name, "modelfile": modelfile, "stream": False},
        timeout=300,
    )
    assert created.status_code == 200, created.text
    pushed = httpx.post(
        f"{server.url}/api/push",
        json={"model": name, "insecure": True, "stream": False},
        timeout=300,
    )
    assert pushed.json() == {"status": "success"}, pushed.text

    page = open_page(tab, empty_server.url, "models")
    page.evaluate(
        """() => {
            window.progress = [];
            new MutationObserver(() => window.progress.push(
                [document.querySelector('#pull-progress').value,
                 document.querySelector('#pull-label').textContent])
            ).observe(document.querySelector('#pull-label'),
                      { childList: true, characterData: true, subtree: true });
        }"""
    )
    name = f"{slow_proxy.host}/library/smol:latest"  # the same repository, slowly
    page.get_by_label("Name").fill(name)
    page.get_by_label("insecure (plain HTTP)").check()
    page.get_by_role("button", name="Pull").click()
    expect(page.locator("#pull-label")).to_contain_text("%", timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#pull-label")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Pull")).to_be_visible()
    expect(page.get_by_role("rowheader", name=name, exact=True)).to_have_count(0)

    page.evaluate("window.progress = []")
    page.get_by_role("button", name="Pull").click()
    expect(page.locator("#pull-label")).to_have_text(f"{name}: success 100%", timeout=300_000)
    expect(page.locator("#pull-progress")).to_have_js_property("value", 100)
    progress = page.evaluate("window.progress")
    shown = [label for _, label in progress]
    assert shown[:2] == ["starting…", "pulling manifest"], shown
    assert page.get_by_label("Name").input_value() == ""  # cleared once pulled
    assert any(0 < value < 99 for value, _ in progress), progress  # seen on the way
    assert slow_proxy.script.blob_gets(), "the pull did not go through the registry"
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=name, exact=True))
    expect(row).to_contain_text("completion")
    expect(row).to_contain_text("llama")
    screenshot(page, "models")


def test_copy_details_delete_and_unload_from_the_models_view(tab: Tab, server: LiveApp) -> None:
    generated = httpx.post(
        f"{server.url}/api/generate",
        json={"model": SMOL, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}},
        timeout=120,
    )
    assert generated.status_code == 200, generated.text
    page = open_page(tab, server.url, "models")
    dialog = page.get_by_role("dialog")

    page.get_by_role("button", name=f"Copy {SMOL}").click()
    dialog.get_by_label("New name").fill("smol-copy")
    dialog.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("rowheader", name="smol-copy:latest")).to_be_visible()

    page.get_by_role("button", name=f"Details of {SMOL}").click()
    expect(dialog).to_contain_text("<|im_start|>")  # the template
    expect(dialog).to_contain_text("num_predict")  # the parameters
    dialog.get_by_role("button", name="Close").click()

    page.get_by_role("button", name="Delete smol-copy:latest").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("rowheader", name="smol-copy:latest")).to_have_count(0)
    tags = httpx.get(f"{server.url}/api/tags").json()["models"]
    assert "smol-copy:latest" not in [m["name"] for m in tags]

    loaded_table = page.locator("#ps-table")
    expect(loaded_table.get_by_role("rowheader", name=SMOL)).to_be_visible()
    page.get_by_role("button", name=f"Unload {SMOL}").click()
    expect(loaded_table.get_by_role("rowheader", name=SMOL)).to_have_count(0)
    assert SMOL not in loaded(server.url)
    assert json.dumps(tab.console.errors) == "[]"
