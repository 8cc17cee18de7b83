"""Native completion events -> Anthropic messages and stream events (pure, no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from ollamapy.anthropic import MessageMeta, collect_message, message_events, stop_reason, usage
from ollamapy.anthropic.errors import error_for, error_object
from ollamapy.anthropic.stream import sse_event
from ollamapy.chat.events import Delta, Event, Final
from ollamapy.chat.messages import ToolCall
from ollamapy.errors import BadRequestError, ModelNotFoundError, RunnerError

META = MessageMeta("msg_1", "m", ("END",))
CALL = ToolCall("ls", {"path": "."}, "call_abc12345")
DONE = Final("stop", prompt_eval_count=30, prompt_cached_count=20, eval_count=4)


async def events_of(items: Sequence[Event]) -> AsyncIterator[Event]:
    for item in items:
        yield item


def collect(items: Sequence[Event]) -> dict[str, Any]:
    return asyncio.run(collect_message(META, events_of(items)))


def stream(items: Sequence[Event]) -> list[tuple[str, dict[str, Any]]]:
    async def run() -> list[tuple[str, dict[str, Any]]]:
        return [event async for event in message_events(META, events_of(items))]

    return asyncio.run(run())


def test_usage_splits_the_prompt() -> None:
    assert usage(DONE) == {
        "input_tokens": 10,
        "output_tokens": 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 20,
    }


@pytest.mark.parametrize(
    ("final", "called", "expected"),
    [
        (Final("stop"), False, ("end_turn", None)),
        (Final("length"), False, ("max_tokens", None)),
        (Final("stop", stop_sequence="END"), False, ("stop_sequence", "END")),
        (Final("stop", stop_sequence="<|im_end|>"), False, ("end_turn", None)),
        (Final("stop", stop_sequence="END"), True, ("tool_use", None)),
        (Final("length"), True, ("tool_use", None)),
    ],
)
def test_stop_reason(final: Final, called: bool, expected: tuple[str, str | None]) -> None:
    assert stop_reason(final, called, ("END",)) == expected


def test_a_whole_message_merges_pieces_into_blocks_in_order() -> None:
    message = collect(
        [
            Delta(thinking="Let me "),
            Delta(thinking="see.", content="I will"),
            Delta(content=" look."),
            Delta(tool_calls=(CALL,)),
            DONE,
        ]
    )
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": ""},
            {"type": "text", "text": "I will look."},
            {"type": "tool_use", "id": "toolu_abc12345", "name": "ls", "input": {"path": "."}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": usage(DONE),
    }


def test_the_stream_opens_and_closes_one_block_at_a_time() -> None:
    events = stream(
        [
            Delta(thinking="Hm."),
            Delta(content="Hi"),
            Delta(content="!"),
            Delta(tool_calls=(CALL, CALL)),
            Final("stop", stop_sequence="END"),
        ]
    )
    assert [(name, payload.get("index")) for name, payload in events] == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("content_block_start", 3),
        ("content_block_delta", 3),
        ("content_block_stop", 3),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 0
    assert events[3][1]["delta"] == {"type": "thinking_delta", "thinking": "Hm."}
    assert events[9][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_abc12345",
        "name": "ls",
        "input": {},
    }
    assert events[10][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"path":"."}'}
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_an_empty_answer_is_start_ping_and_the_end() -> None:
    names = [name for name, _ in stream([Final("stop", stop_sequence="END")])]
    assert names == ["message_start", "ping", "message_delta", "message_stop"]


def test_events_without_a_final_are_a_failure() -> None:
    with pytest.raises(RunnerError):
        stream([Delta(content="Hi")])
    with pytest.raises(RunnerError):
        collect([Delta(content="Hi")])


def test_sse_framing_names_each_event() -> None:
    assert sse_event(("ping", {"type": "ping"})) == b'event: ping\ndata: {"type":"ping"}\n\n'


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (BadRequestError("bad"), 400, "invalid_request_error"),
        (ModelNotFoundError("m"), 404, "not_found_error"),
        (RunnerError("boom"), 500, "api_error"),
        (ValueError("oops"), 500, "api_error"),
    ],
)
def test_errors_are_anthropic_error_objects(exc: Exception, status: int, kind: str) -> None:
    body = error_for(exc)
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["error"]["message"]
    assert error_object(status, "x")["error"]["type"] == kind
