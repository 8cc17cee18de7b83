"""Replayed agent requests: each transcript in tests/testdata/anthropic/ (written by
`scripts/make_anthropic_transcripts.py` from the Messages API's documentation: long
system prompts in blocks, 22 tools, tool results, parallel calls, thinking, streaming)
goes through the real app with a scripted runner, to a model made an alias of the name
the agent asks for; every response must parse with the `anthropic` SDK's own types, the
stream must keep Anthropic's event order, and the SDK's own stream helper must assemble
the same message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.anthropic.conftest import Server
from tests.anthropic.test_routes import sse
from tests.conftest import TESTDATA
from tests.server.test_thinking_api import QWEN3

TRANSCRIPTS = sorted((TESTDATA / "anthropic").glob("*.json"))
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
SDK_FIELDS = ("model", "max_tokens", "system", "tools", "messages", "metadata", "thinking")
"""The fields this SDK's `messages.stream` declares; the rest go as extra_body."""


def load(path: Path) -> dict[str, Any]:
    transcript: dict[str, Any] = json.loads(path.read_text())
    return transcript


def agent_model(server: Server, name: str) -> None:
    """A Qwen 3 (tools and thinking) scripted model, copied to the agent's model name."""
    server.derive("qwen3", QWEN3)
    copied = httpx.post(
        f"{server.url}/api/copy", json={"source": "qwen3", "destination": name}, timeout=30
    )
    assert copied.status_code == 200, copied.text


def check_order(names: list[str]) -> None:
    """message_start, ping, balanced blocks, message_delta, message_stop."""
    assert names[:2] == ["message_start", "ping"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    depth = 0
    for name in names[2:-2]:
        depth += {"content_block_start": 1, "content_block_stop": -1}.get(name, 0)
        assert depth in (0, 1), names
        assert name != "content_block_delta" or depth == 1, names
    assert depth == 0


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_replayed_requests_parse_with_the_sdk_types(server: Server, path: Path) -> None:
    transcript = load(path)
    body = transcript["body"]
    agent_model(server, body["model"])
    server.script.chunks = list(transcript["model_writes"])
    response = httpx.post(f"{server.url}{transcript['path']}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    if transcript["path"].endswith("count_tokens"):
        assert MessageTokensCount.model_validate(response.json()).input_tokens > 1000  # words
        return
    if not body.get("stream"):
        message = Message.model_validate(response.json())
        assert message.content and message.model == body["model"]
        return
    events = sse(response)
    check_order([name for name, _ in events])
    parsed = [EVENTS.validate_python(payload) for _, payload in events if payload["type"] != "ping"]
    assert parsed[0].type == "message_start" and parsed[-1].type == "message_stop"
    indices = [e.index for e in parsed if e.type == "content_block_start"]
    assert indices == list(range(len(indices)))
    sdk = server.anthropic()
    extra = {key: value for key, value in body.items() if key not in (*SDK_FIELDS, "stream")}
    declared = {key: value for key, value in body.items() if key in SDK_FIELDS}
    with sdk.messages.stream(**declared, extra_body=extra) as stream:
        final = stream.get_final_message()
    starts = [e.content_block.type for e in parsed if e.type == "content_block_start"]
    written = "".join(transcript["model_writes"])
    assert ("thinking" in starts) is ("<think>" in written)
    assert ("tool_use" in starts) is ("<tool_call>" in written)
    assert [block.type for block in final.content] == starts
    assert final.stop_reason == parsed[-2].delta.stop_reason  # type: ignore[union-attr]


def test_the_transcripts_are_what_agents_send() -> None:
    """Long system prompts, 20+ tools, tool results and streaming, all represented."""
    bodies = [load(path)["body"] for path in TRANSCRIPTS]
    assert len(bodies) >= 5
    assert any(len(body.get("tools", [])) >= 20 for body in bodies)
    assert any(
        sum(len(block["text"]) for block in body.get("system", [])) > 10_000 for body in bodies
    )
    results = [
        block
        for body in bodies
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block["type"] == "tool_result"
    ]
    assert len(results) >= 3 and any(block.get("is_error") for block in results)
    assert any(body.get("stream") for body in bodies)
    assert any(body.get("thinking") for body in bodies)
