"""The chat and model page at `/ui`: static files built from `webui/` and shipped in the package.

The page is a client of the native API like any other (it calls `/api/chat`, `/api/tags`, ...
from the same origin), so this module only serves files: `GET /ui` and `/ui/` answer
`index.html`, `/ui/<file>` the built assets. Every answer carries a Content-Security-Policy
that lets the page load and fetch from this server only, so a model's Markdown can never
make the browser reach another machine. `webui/` and `scripts/build_ui.sh` make the files.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from ollamapy.errors import NotFoundError

UI_DIR = Path(__file__).resolve().parent / "ui"
"""Where `scripts/build_ui.sh` writes the built page (committed, so no Node is needed)."""

PAGE_PATH = "/ui/"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""Same-origin only: no inline script, no remote image, font or fetch."""

_SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}

_IMMUTABLE = "public, max-age=31536000, immutable"
"""Vite puts a content hash in every asset's name, so an asset never changes under its URL."""


def is_page_request(method: str, path: str) -> bool:
    """Whether a request only reads the page's own files (no model, no data): an API-key
    guard lets these through, so the page can load and then ask for a key on its first 401."""
    return method in {"GET", "HEAD"} and (path == "/ui" or path.startswith(PAGE_PATH))


def page_url(base_url: str) -> str:
    """The address `ollama serve` prints for the page (`http://127.0.0.1:11434/ui/`)."""
    return base_url.rstrip("/") + PAGE_PATH


async def redirect_to_page(request: Request) -> Response:
    """`/ui` -> `/ui/`, so the page's relative asset URLs resolve under `/ui/`."""
    return RedirectResponse(PAGE_PATH, status_code=308)


async def serve_file(request: Request) -> Response:
    """`/ui/` is the page; `/ui/<path>` a built file; anything else under /ui is a 404."""
    relative = str(request.path_params.get("path", "")) or "index.html"
    path = resolve_file(UI_DIR, relative)
    if path is None:
        raise NotFoundError("404 page not found")
    cache = _IMMUTABLE if relative.startswith("assets/") else "no-cache"
    return FileResponse(path, headers={**_SECURITY_HEADERS, "cache-control": cache})


def resolve_file(root: Path, relative: str) -> Path | None:
    """The file `relative` names inside `root`, or None: never a path outside it (`..`,
    absolute paths, symlinks out), never a directory."""
    if not relative or "\\" in relative or "\0" in relative:
        return None
    try:
        path = (root / relative).resolve()
        path.relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return path if path.is_file() else None


ROUTES = [
    Route("/ui", redirect_to_page, methods=["GET", "HEAD"]),
    Route("/ui/{path:path}", serve_file, methods=["GET", "HEAD"]),
]
