"""Browser fixtures: Playwright driving Debian's Chromium (headless, offline), a console watch
that fails a test on any console error, and a folder for the screenshots the tests keep.

Chromium comes from `apt-get install chromium` (scripts/test.sh installs it); Playwright's own
browser download is never used (`executable_path`), so the tests need no network.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
"""Screenshots of the page's main states (gitignored; docs/ keeps two of them)."""


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is missing: install it with `apt-get install chromium`")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per module: Playwright's sync API keeps an event loop running in this
    thread while it is open, which must end before an async test (pytest-asyncio) runs."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class Console:
    """Every console error and uncaught exception a page produced."""

    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    """Substrings of errors a test expects (a 401 the key prompt answers)."""

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} @ {message.location.get('url', '')}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@dataclass
class Tab:
    page: Page
    console: Console
    context: BrowserContext


def open_tab(browser: Browser, **context_options: object) -> Tab:
    context = browser.new_context(**context_options)  # type: ignore[arg-type]
    page = context.new_page()
    console = Console()
    page.on("console", console.on_message)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    return Tab(page, console, context)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A fresh browser profile (empty IndexedDB) at desktop size; no console errors allowed."""
    opened = open_tab(browser, viewport={"width": 1280, "height": 820})
    yield opened
    opened.context.close()
    assert opened.console.unexpected() == []


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
