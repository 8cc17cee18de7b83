"""Streaming in the page, through the real server with the scripted runner (`tests/fakes.py`)
writing slowly: the thinking block is open while the trace streams and folds when the
answer starts; Stop ends the stream and the server cancels the runner's generation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import TESTDATA
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted
from tests.ui.conftest import Tab, screenshot

QWEN3_TEMPLATE = (TESTDATA / "qwen3.gotmpl").read_text()
QWEN3 = f'TEMPLATE """{QWEN3_TEMPLATE}"""\nPARAMETER stop "<|im_end|>"\n'
TRACE = [
    "<think>\n",
    "I count ",
    "the r ",
    "letters: ",
    "s-t-r-a-w-",
    "b-e-r-r-y.",
    "\n</think>\n\n",
]
ANSWER = ["There ", "are ", "**three** ", "r letters."]


class Drip:
    """Stands in for `Script.hold`: each chunk waits `delay` seconds, a model writing slowly."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)


@pytest.fixture
def script() -> Script:
    return Script(chunks=TRACE + ANSWER, hold=cast(asyncio.Event, Drip(0.3)))


@pytest.fixture
def server(tmp_path: Path, script: Script) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, script, QWEN3)


def start_chat(tab: Tab, server: ScriptedServer, text: str) -> Page:
    page = tab.page
    page.goto(f"{server.url}/ui/")
    expect(page.locator("body[data-ready='true']")).to_be_attached()
    expect(page.get_by_label("Model", exact=True)).to_have_value(MODEL)
    expect(page.get_by_label("Model capabilities")).to_contain_text("thinking")
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Think").select_option("true")
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")
    return page


def test_the_trace_streams_in_an_open_block_that_folds_when_the_answer_starts(
    tab: Tab, server: ScriptedServer
) -> None:
    page = start_chat(tab, server, "How many r in strawberry?")
    streaming = page.locator(".msg.assistant.streaming")
    thinking = streaming.locator("details.thinking")
    expect(thinking.locator(".thinking-text")).to_contain_text("I count")
    expect(thinking).to_have_attribute("open", "")
    expect(thinking.locator("summary")).to_have_text("Thinking…")
    assert streaming.locator(".content").inner_text() == ""  # the answer has not started
    screenshot(page, "thinking")
    expect(streaming.locator(".content")).to_contain_text("There are")
    expect(thinking).not_to_have_attribute("open", "")  # folded as the answer streams
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".stats")).to_contain_text("tokens/s")
    expect(answer.locator(".content strong")).to_have_text("three")
    expect(answer.locator(".thinking-text")).to_have_text(
        "I count the r letters: s-t-r-a-w-b-e-r-r-y.\n"
    )


def test_stop_ends_the_stream_and_the_server_cancels_the_generation(
    tab: Tab, server: ScriptedServer, script: Script
) -> None:
    script.chunks = [f"word{n} " for n in range(400)]
    page = start_chat(tab, server, "Go on forever")
    expect(page.locator(".msg.assistant.streaming .content")).to_contain_text("word2")
    assert script.cancelled == 0
    page.get_by_role("button", name="Stop").click()
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".stats")).to_contain_text("stopped")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    deadline = time.monotonic() + 10
    while script.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert script.cancelled == 1  # the runner's stream was closed: the generation ended
    shown = answer.locator(".content").inner_text()
    assert "word2" in shown and "word399" not in shown
