"""`/ui`: the built page and its assets, with a same-origin Content-Security-Policy; `/`
keeps Ollama's answer; nothing outside the page's folder is ever served."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ollamapy.config import Config, parse_host
from ollamapy.server import ui
from ollamapy.server.app import create_app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = Config(host=parse_host("127.0.0.1:11999"), models_dir=tmp_path / "models")
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:11999") as c:
        yield c


async def test_ui_redirects_to_the_page_folder(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "/ui/"


async def test_the_page_is_served_with_a_same_origin_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert "<script" in response.text


async def test_every_asset_the_page_names_is_served_and_cached_for_good(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/ui/")).text
    assets = re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', page)
    assert {Path(a).suffix for a in assets} == {".js", ".css"}
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert "immutable" in response.headers["cache-control"]
        assert response.headers["content-security-policy"] == ui.CONTENT_SECURITY_POLICY


async def test_the_root_keeps_ollamas_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.text == "Ollama is running"


@pytest.mark.parametrize(
    "path", ["/ui/missing.js", "/ui/assets/", "/ui/..%2f..%2fapp.py", "/ui/%2e%2e/ui.py"]
)
async def test_unknown_files_are_404s_in_ollamas_error_shape(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "404 page not found"}


@pytest.mark.parametrize(
    "relative", ["../ui.py", "/etc/passwd", "assets/../../ui.py", "a\\b", "", "assets"]
)
def test_resolve_file_never_leaves_the_folder_nor_names_a_directory(
    tmp_path: Path, relative: str
) -> None:
    root = tmp_path / "ui"
    (root / "assets").mkdir(parents=True)
    (tmp_path / "ui.py").write_text("secret")
    assert ui.resolve_file(root, relative) is None


def test_resolve_file_refuses_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "ui"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "page.html").write_text("ok")
    assert ui.resolve_file(root, "link.txt") is None
    assert ui.resolve_file(root, "page.html") == (root / "page.html").resolve()


@pytest.mark.parametrize(
    ("host", "printed"),
    [
        ("127.0.0.1:11434", "http://127.0.0.1:11434/ui/"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080/ui/"),
        ("[::]:11434", "http://[::1]:11434/ui/"),
        ("example.lan:11434", "http://example.lan:11434/ui/"),
    ],
)
def test_serve_prints_an_address_a_browser_can_open(host: str, printed: str) -> None:
    from ollamapy.server.app import page_address

    assert page_address(Config(host=parse_host(host))) == printed


@pytest.mark.parametrize(
    ("method", "path", "page"),
    [
        ("GET", "/ui", True),
        ("GET", "/ui/", True),
        ("HEAD", "/ui/assets/index.js", True),
        ("POST", "/ui/", False),
        ("GET", "/uix", False),
        ("GET", "/api/tags", False),
        ("GET", "/", False),
    ],
)
def test_only_reads_of_the_pages_files_count_as_page_requests(
    method: str, path: str, page: bool
) -> None:
    assert ui.is_page_request(method, path) is page
