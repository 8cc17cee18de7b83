"""The page in a real browser, against a real server whose model API answers are scripted
(no model needed): rendering, the thinking block, images, the key prompt, layout."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from ollamapy.config import Config, parse_host
from tests.server.conftest import LiveServer, free_port, serve
from tests.ui.conftest import ARTIFACTS, Tab, open_tab, screenshot
from tests.ui.fakes import FakeApi, FakeModel, answer_lines

SMOL = FakeModel("smollm2:135m", ["completion", "tools"])
THINKER = FakeModel("qwen3:0.6b", ["completion", "tools", "thinking"], family="qwen3")
SEER = FakeModel("gemma3:4b", ["completion", "vision"], family="gemma3")


def png(width: int, height: int) -> bytes:
    """A small RGB gradient PNG, made here (zlib + CRCs) so the test needs no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\0" + bytes(v for x in range(width) for v in (x * 5 % 256, y * 5 % 256, 160))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png(48, 48)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server (static page, CSP) with an empty store: the tests script the model API."""
    host = parse_host(f"127.0.0.1:{free_port()}")
    yield from serve(Config(host=host, models_dir=tmp_path_factory.mktemp("models")))


def open_page(tab: Tab, server: LiveServer, api: FakeApi) -> Page:
    api.install(tab.page)
    tab.page.goto(f"{server.url}/ui/")
    expect(tab.page.locator("body[data-ready='true']")).to_be_attached()
    return tab.page


def send(page: Page, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")


def give_file(page: Page, how: str, name: str, data: str) -> None:
    """Drop a file on the message form, or paste it into the message box, as a browser does."""
    page.evaluate(
        """([how, name, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const files = new DataTransfer();
            files.items.add(new File([bytes], name, { type: 'image/png' }));
            const init = { bubbles: true, cancelable: true };
            const event = how === 'drop'
                ? new DragEvent('drop', { ...init, dataTransfer: files })
                : new ClipboardEvent('paste', { ...init, clipboardData: files });
            const target = how === 'drop' ? '#composer' : '#composer-input';
            document.querySelector(target).dispatchEvent(event);
        }""",
        [how, name, data],
    )


def test_markdown_is_sanitized_highlighted_and_copyable(tab: Tab, server: LiveServer) -> None:
    content = (
        "Here is **code**:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
        "<script>window.pwned = 1</script>"
        '<img src="http://example.com/x.png" onerror="window.pwned=2">'
        '\n\n<a href="javascript:window.pwned=3">link</a> <span style="color:red">styled</span>\n'
    )
    api = FakeApi([SMOL], answer_lines(content=content))
    page = open_page(tab, server, api)
    send(page, "show me code")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".stats")).to_contain_text("20.0 tokens/s")
    expect(answer.locator(".stats")).to_contain_text("TTFT")
    expect(answer.locator("strong")).to_have_text("code")
    expect(answer.locator("pre code .hljs-keyword").first).to_have_text("def")
    assert answer.locator("script, img, [style], [onerror]").count() == 0
    assert answer.locator("a[href^='javascript']").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(answer.locator(".content")).to_contain_text("<script>window.pwned = 1</script>")
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    answer.get_by_role("button", name="Copy code").click()
    assert page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b"
    assert api.chat_bodies[0]["messages"] == [{"role": "user", "content": "show me code"}]


def test_thinking_shows_in_a_collapsible_block(tab: Tab, server: LiveServer) -> None:
    api = FakeApi([THINKER], answer_lines(thinking="Let me count the letters.", content="Three."))
    page = open_page(tab, server, api)
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Think").select_option("high")
    page.get_by_label("Temperature").fill("0.2")
    page.get_by_label("Context length (num_ctx)").fill("4096")
    page.get_by_label("System prompt").fill("Be brief.")
    send(page, "How many r in strawberry?")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".content")).to_have_text("Three.")
    thinking = answer.locator("details.thinking")
    expect(thinking.locator(".thinking-text")).to_have_text("Let me count the letters. ")
    expect(thinking).not_to_have_attribute("open", "")  # folded once the answer is there
    thinking.locator("summary").click()
    expect(thinking).to_have_attribute("open", "")
    body = api.chat_bodies[0]
    assert body["think"] == "high"
    assert body["options"] == {"temperature": 0.2, "num_ctx": 4096}
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_images_attach_by_picker_drop_and_paste_for_a_vision_model(
    tab: Tab, server: LiveServer, tmp_path: Path
) -> None:
    """The vision capability is scripted here (/api/show says `vision`): the bundled models
    have none, and the server's image support is another change."""
    api = FakeApi([SMOL, SEER], answer_lines(content="A tiny red dot."))
    page = open_page(tab, server, api)
    expect(page.get_by_role("button", name="Attach images")).to_be_disabled()  # smollm2: no vision
    page.get_by_label("Model", exact=True).select_option(SEER.name)
    expect(page.get_by_label("Model capabilities")).to_contain_text("vision")
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach images").click()
    chooser.value.set_files(str(image))
    encoded = base64.b64encode(PNG).decode()
    give_file(page, "drop", "dropped.png", encoded)
    give_file(page, "paste", "pasted.png", encoded)
    expect(page.get_by_role("list", name="Attached images").locator("img")).to_have_count(3)
    send(page, "What is this?")
    expect(page.locator(".msg.user img")).to_have_count(3)
    widths = page.locator(".msg.user img").evaluate_all("(imgs) => imgs.map((i) => i.naturalWidth)")
    assert widths == [48, 48, 48]  # the images decode and show in the sent message
    expect(page.locator(".msg.assistant .content")).to_have_text("A tiny red dot.")
    (user,) = api.chat_bodies[0]["messages"]
    assert user["images"] == [encoded, encoded, encoded]
    screenshot(page, "image-attached")


def test_images_are_refused_for_a_model_without_vision(tab: Tab, server: LiveServer) -> None:
    page = open_page(tab, server, FakeApi([SMOL]))
    give_file(page, "drop", "x.png", base64.b64encode(PNG).decode())
    expect(page.locator("#composer-note")).to_contain_text("does not take images")
    expect(page.get_by_role("list", name="Attached images").locator("img")).to_have_count(0)


def test_a_401_asks_for_a_key_kept_for_the_session_only(tab: Tab, server: LiveServer) -> None:
    """API keys are scripted (a 401 unless `Authorization: Bearer k-123`), as the server's
    key support is another change."""
    tab.console.allowed.append("401")  # Chromium logs each refused fetch
    api = FakeApi([SMOL])
    seen: list[str | None] = []

    def guard(route: Route) -> None:
        auth = route.request.headers.get("authorization")
        seen.append(auth)
        if auth != "Bearer k-123":
            route.fulfill(status=401, json={"error": "unauthorized"})
        else:
            route.fallback()

    api.install(tab.page)
    tab.page.route("**/api/**", guard)
    page = tab.page
    page.goto(f"{server.url}/ui/")
    dialog = page.get_by_role("dialog", name="API key needed")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("unauthorized")
    dialog.get_by_label("API key").fill("k-123")
    dialog.get_by_role("button", name="Use key").click()
    expect(page.get_by_label("Model", exact=True)).to_have_value(SMOL.name)
    assert page.evaluate("sessionStorage.getItem('ollamapy.apiKey')") == "k-123"
    assert "k-123" not in json.dumps(page.evaluate("Object.entries(localStorage)"))
    assert seen[0] is None and seen[-1] == "Bearer k-123"


def test_conversations_export_and_import(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    api = FakeApi([SMOL], answer_lines(content="Paris."))
    page = open_page(tab, server, api)
    send(page, "Capital of France?")
    expect(page.locator(".msg.assistant .stats")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export").click()
    exported = tmp_path / "export.json"
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    (conversation,) = data["conversations"]
    assert [m["content"] for m in conversation["messages"]] == ["Capital of France?", "Paris."]
    conversation["id"] = "imported-1"
    conversation["title"] = "Imported geography"
    exported.write_text(json.dumps(data))
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import").click()
    chooser.value.set_files(str(exported))
    sidebar = page.get_by_role("list", name="Saved conversations")
    expect(sidebar.get_by_role("button", name="Imported geography", exact=True)).to_be_visible()
    page.get_by_label("Search conversations").fill("geography")
    expect(sidebar.locator(".conv")).to_have_count(1)


def test_rename_delete_regenerate_and_branch(tab: Tab, server: LiveServer) -> None:
    api = FakeApi([SMOL], answer_lines(content="First answer."))
    page = open_page(tab, server, api)
    send(page, "Hello there")
    expect(page.locator(".msg.assistant .stats")).to_be_visible()
    api.chat_lines = answer_lines(content="Second answer.")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".msg.assistant .content")).to_have_text("Second answer.")
    assert len(api.chat_bodies[1]["messages"]) == 1  # the old answer is not sent again
    page.locator(".msg.user").get_by_role("button", name="Edit").click()
    page.get_by_label("Edit message").fill("Hello again")
    api.chat_lines = answer_lines(content="Branched answer.")
    page.get_by_role("button", name="Send as new branch").click()
    expect(page.locator(".msg.assistant .content")).to_have_text("Branched answer.")
    sidebar = page.get_by_role("list", name="Saved conversations")
    expect(sidebar.locator(".conv")).to_have_count(2)
    expect(sidebar.get_by_role("button", name="Hello there (branch)", exact=True)).to_be_visible()
    sidebar.get_by_role("button", name="Rename Hello there (branch)").click()
    page.get_by_role("dialog").get_by_label("Title").fill("Greetings")
    page.get_by_role("dialog").get_by_role("button", name="Rename").click()
    sidebar.get_by_role("button", name="Delete Hello there", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(sidebar.locator(".conv")).to_have_count(1)
    expect(sidebar.get_by_role("button", name="Greetings", exact=True)).to_be_visible()
    sidebar.get_by_role("button", name="Greetings", exact=True).click()
    expect(page.locator(".msg.user .content")).to_have_text("Hello again")


def test_phone_size_dark_and_every_control_labelled(browser: Browser, server: LiveServer) -> None:
    tab = open_tab(browser, viewport={"width": 390, "height": 800}, color_scheme="dark")
    try:
        api = FakeApi([THINKER], answer_lines(thinking="Short thought.", content="Hi! `x = 1`"))
        page = open_page(tab, server, api)
        send(page, "hi")
        expect(page.locator(".msg.assistant .stats")).to_be_visible()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(21, 23, 24)"  # the dark palette
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
        toggle = page.get_by_role("button", name="Show conversations")
        expect(page.get_by_role("button", name="New chat")).not_to_be_in_viewport()
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(page.get_by_role("button", name="New chat")).to_be_in_viewport()
        screenshot(page, "phone-dark")
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('button, input, select, textarea')]
                .filter((el) => el.type !== 'file' && !el.closest('[hidden]'))
                .filter((el) => !(el.labels?.length || el.getAttribute('aria-label')
                                  || el.textContent.trim()))
                .map((el) => el.outerHTML)"""
        )
        assert unlabelled == []
    finally:
        tab.context.close()
    assert tab.console.unexpected() == []
    assert ARTIFACTS.joinpath("phone-dark.png").is_file()


def test_the_page_fetches_nothing_from_another_origin(tab: Tab, server: LiveServer) -> None:
    requests: list[str] = []
    tab.page.on("request", lambda request: requests.append(request.url))
    open_page(tab, server, FakeApi([SMOL]))
    assert requests and all(url.startswith(server.url) for url in requests), requests


def test_the_page_works_from_the_keyboard(tab: Tab, server: LiveServer) -> None:
    api = FakeApi([SMOL], answer_lines(content="Hello back."))
    page = open_page(tab, server, api)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to message box")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    page.keyboard.type("Hello")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("there")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant .content")).to_have_text("Hello back.")
    assert api.chat_bodies[0]["messages"][0]["content"] == "Hello\nthere"
    assert "think" not in api.chat_bodies[0] and "options" not in api.chat_bodies[0]
    page.get_by_role("button", name="Settings").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Think")).to_be_disabled()  # smollm2 does not think
    rename = page.get_by_role("button", name="Rename Hello")
    rename.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog").get_by_label("Title")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    page.get_by_role("button", name="Models").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Pull a model")).to_be_visible()
    expect(page.get_by_role("button", name="Models")).to_have_attribute("aria-current", "page")
