"""Scripted API answers for page tests that need no model: routes a Playwright page's
`/api/*` calls to fixed JSON and NDJSON, and records what the page sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Page, Route


@dataclass
class FakeModel:
    name: str
    capabilities: list[str]
    family: str = "llama"


@dataclass
class FakeApi:
    models: list[FakeModel]
    chat_lines: list[dict[str, Any]] = field(default_factory=list)
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)

    def install(self, page: Page) -> None:
        page.route("**/api/tags", self._tags)
        page.route("**/api/show", self._show)
        page.route("**/api/chat", self._chat)

    def _tags(self, route: Route) -> None:
        models = [
            {
                "name": m.name,
                "model": m.name,
                "size": 123_000_000,
                "digest": "0" * 64,
                "details": {"family": m.family, "quantization_level": "Q4_0"},
            }
            for m in self.models
        ]
        route.fulfill(json={"models": models})

    def _show(self, route: Route) -> None:
        name = json.loads(route.request.post_data or "{}")["model"]
        model = next(m for m in self.models if m.name == name)
        route.fulfill(json={"capabilities": model.capabilities, "details": {"family": "llama"}})

    def _chat(self, route: Route) -> None:
        self.chat_bodies.append(json.loads(route.request.post_data or "{}"))
        body = "".join(json.dumps(line) + "\n" for line in self.chat_lines)
        route.fulfill(body=body, content_type="application/x-ndjson")


def answer_lines(*, thinking: str = "", content: str = "") -> list[dict[str, Any]]:
    """An NDJSON chat stream: thinking pieces, content pieces, then the final stats line."""
    lines: list[dict[str, Any]] = []
    for piece in thinking.split(" "):
        lines.append({"message": {"role": "assistant", "content": "", "thinking": piece + " "}})
    for piece in content.splitlines(keepends=True):
        lines.append({"message": {"role": "assistant", "content": piece}, "done": False})
    lines.append(
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "eval_count": 40,
            "eval_duration": 2_000_000_000,
        }
    )
    return [line for line in lines if line["message"].get("thinking") != " "]
