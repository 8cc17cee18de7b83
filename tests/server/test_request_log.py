"""One structured log line per request: its id, route, model, status, tokens and durations,
at the level `OLLAMA_DEBUG` selects; prompts and keys never reach the log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollamapy.config import Config
from ollamapy.server.app import configure_logging
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted
from tests.scheduler.live import wait_until

REQUESTS = "ollamapy.server.requests"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, Script(chunks=["Hello", " there"]))


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == REQUESTS]


def line_of(caplog: pytest.LogCaptureFixture, request_id: str) -> str:
    """The one line logged for a request; it is written just after the answer's last byte,
    so the client may see the answer first: wait for it."""

    def lines() -> list[str]:
        return [
            r.getMessage() for r in request_lines(caplog) if f"id={request_id} " in r.getMessage()
        ]

    assert wait_until(lambda: len(lines()) > 0, timeout=5)
    (line,) = lines()
    return line


def test_each_request_writes_one_line_with_id_route_model_status_tokens_and_durations(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=REQUESTS)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{server.url}/api/chat", json=body, headers={"X-Request-ID": "abc-123"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "abc-123"
    line = line_of(caplog, "abc-123")
    assert line.startswith("request id=abc-123 method=POST route=/api/chat ")
    assert f"model={MODEL} status=200 " in line
    assert re.search(r" prompt_tokens=\d+ cached_tokens=0 generated_tokens=2 ", line)
    assert re.search(r" queue_ms=[\d.]+ ttft_ms=[\d.]+ duration_ms=[\d.]+$", line)


def test_a_failed_request_is_logged_with_its_status_and_a_fresh_id(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=REQUESTS)
    body = {"model": "missing:latest", "messages": []}
    answer = httpx.post(f"{server.url}/api/chat", json=body, headers={"X-Request-ID": "a b\tc"})
    assert answer.status_code == 404
    fresh = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", fresh)
    line = line_of(caplog, fresh)
    assert "route=/api/chat" in line and "status=404" in line and "model=" not in line


def test_metrics_scrapes_are_logged_at_debug_only(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=REQUESTS)
    httpx.get(f"{server.url}/metrics")
    httpx.get(f"{server.url}/api/version")
    assert wait_until(lambda: len(request_lines(caplog)) == 2, timeout=5)
    levels = {
        r.getMessage().split(" route=")[1].split()[0]: r.levelno for r in request_lines(caplog)
    }
    assert levels == {"/metrics": logging.DEBUG, "/api/version": logging.INFO}


SECRET_PROMPT = "the-launch-code-is-8675309"
SECRET_KEY = "sk-secret-0123456789abcdef"


def test_prompts_and_keys_never_reach_the_log(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {SECRET_KEY}", "x-api-key": SECRET_KEY}
    message = {"role": "user", "content": SECRET_PROMPT}
    calls = [
        ("/api/chat", {"model": MODEL, "messages": [message], "stream": True}),
        ("/api/generate", {"model": MODEL, "prompt": SECRET_PROMPT, "system": SECRET_PROMPT}),
        ("/v1/chat/completions", {"model": MODEL, "messages": [message]}),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "bogus", "content": SECRET_PROMPT}]}),
        ("/api/chat", {"model": SECRET_PROMPT, "messages": [message]}),
    ]
    for path, body in calls:
        httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)
    assert wait_until(lambda: len(request_lines(caplog)) == len(calls), timeout=5)
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    assert SECRET_PROMPT not in logged
    assert SECRET_KEY not in logged


@pytest.mark.parametrize(("debug", "level"), [(False, logging.INFO), (True, logging.DEBUG)])
def test_ollama_debug_selects_the_level_of_the_request_log(debug: bool, level: int) -> None:
    root = logging.getLogger()
    before = root.level
    try:
        configure_logging(Config(debug=debug))
        assert logging.getLogger(REQUESTS).getEffectiveLevel() == level
    finally:
        root.setLevel(before)
