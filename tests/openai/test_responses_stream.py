"""Completion events → Responses objects and events (`openai.responses_stream`), pure: the
event sequence for text, a thinking trace and tool calls, the incomplete and failed ends,
and that the streamed and collected forms agree. Every event list is checked with the SDK's
own types and stream accumulator (`responses_checks`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from openai.types.responses import ResponseItem
from pydantic import TypeAdapter

from ollamapy.chat.events import Delta, Event, Final
from ollamapy.chat.messages import ToolCall
from ollamapy.errors import BadRequestError, RunnerError
from ollamapy.openai.responses_stream import (
    ResponseBuilder,
    base_fields,
    collect_response,
    item_page,
    listed_items,
    response_events,
    sse_frame,
)
from tests.openai.responses_checks import parse_events, parse_response

BASE = base_fields(
    model="m",
    instructions=None,
    tools=[],
    tool_choice=None,
    parallel_tool_calls=None,
    temperature=1.0,
    top_p=1.0,
    max_output_tokens=None,
    effort=None,
    text_format=None,
    previous_response_id=None,
    store=True,
    truncation="disabled",
    metadata=None,
)
FINAL = Final("stop", prompt_eval_count=10, prompt_cached_count=4, eval_count=3)
CALL = ToolCall("get_weather", {"city": "Paris"}, id="call_9")


async def _events(items: Sequence[Event], fail: Exception | None = None) -> AsyncIterator[Event]:
    for item in items:
        yield item
    if fail is not None:
        raise fail


def stream(items: Sequence[Event], fail: Exception | None = None) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        return [e async for e in response_events(ResponseBuilder(BASE), _events(items, fail))]

    return asyncio.run(run())


def collect(items: Sequence[Event]) -> dict[str, Any]:
    return asyncio.run(collect_response(ResponseBuilder(BASE), _events(items)))


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def test_text_streams_as_one_message_with_output_text() -> None:
    events = stream([Delta("Hel"), Delta("lo"), FINAL])
    parse_events(events)
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = parse_response(events[-1]["response"])
    assert final.output_text == "Hello" and final.status == "completed"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 3)
    assert final.usage.input_tokens_details.cached_tokens == 4


def test_a_trace_then_text_then_a_call_are_three_items_in_order() -> None:
    events = stream(
        [
            Delta(thinking="Let me "),
            Delta(thinking="see", content="It is"),
            Delta(tool_calls=(CALL,)),
            FINAL,
        ]
    )
    parse_events(events)
    final = parse_response(events[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    reasoning, message, call = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Let me see"
    assert message.type == "message" and final.output_text == "It is"
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.call_id) == (
        "get_weather",
        '{"city":"Paris"}',
        "call_9",
    )
    assert "response.reasoning_summary_text.delta" in types(events)
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert [d["delta"] for d in deltas] == ['{"city":"Paris"}']
    # each item is finished before the next is added
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert added == done == [0, 1, 2]


def test_a_call_without_an_id_gets_one() -> None:
    events = stream([Delta(tool_calls=(ToolCall("f", {}),)), FINAL])
    call = parse_response(events[-1]["response"]).output[0]
    assert call.type == "function_call" and call.call_id.startswith("call_")


def test_max_output_tokens_ends_the_response_incomplete() -> None:
    events = stream([Delta("cut"), Final("length", eval_count=1)])
    parse_events(events)
    assert events[-1]["type"] == "response.incomplete"
    final = parse_response(events[-1]["response"])
    assert final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"


def test_a_failure_after_the_start_is_an_error_event_then_response_failed() -> None:
    events = stream([Delta("partial")], fail=RunnerError("runner crashed"))
    parse_events(events)
    assert types(events)[-2:] == ["error", "response.failed"]
    assert events[-2]["message"] == "runner crashed"
    failed = parse_response(events[-1]["response"])
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.message == "runner crashed"


def test_events_that_end_without_a_final_fail_the_stream() -> None:
    events = stream([Delta("x")])
    assert types(events)[-1] == "response.failed"


def test_a_failure_before_the_first_event_raises_so_the_route_keeps_its_status() -> None:
    with pytest.raises(BadRequestError, match="context"):
        stream([], fail=BadRequestError("the input length exceeds the context length"))


def test_the_collected_object_is_the_streamed_final_object() -> None:
    items: list[Event] = [Delta(thinking="t"), Delta("a"), Delta(tool_calls=(CALL,)), FINAL]
    streamed = stream(items)[-1]["response"]
    collected = collect(items)
    parse_response(collected)
    strip = ("id", "created_at", "completed_at")

    def shape(response: dict[str, Any]) -> Any:
        output = [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]
        return {k: v for k, v in response.items() if k not in strip} | {"output": output}

    assert shape(collected) == shape(streamed)


def test_sse_frames_name_the_event() -> None:
    frame = sse_frame({"type": "response.created", "sequence_number": 0})
    assert (
        frame
        == b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
    )


def test_a_custom_tool_call_streams_its_input() -> None:
    patch = ToolCall("apply_patch", {"input": "*** Begin Patch"}, id="call_p")

    async def run() -> list[dict[str, Any]]:
        builder = ResponseBuilder(BASE, frozenset({"apply_patch"}))
        return [
            e async for e in response_events(builder, _events([Delta(tool_calls=(patch,)), FINAL]))
        ]

    events = asyncio.run(run())
    parse_events(events)
    assert types(events)[2:6] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    (call,) = parse_response(events[-1]["response"]).output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input, call.call_id) == ("apply_patch", "*** Begin Patch", "call_p")


STORED_ITEMS: list[dict[str, Any]] = [
    {"type": "message", "role": "developer", "content": "Rules"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Look"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
        ],
    },
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "t"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "fc_1"},
    {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    {"type": "custom_tool_call", "call_id": "c2", "name": "p", "input": "x"},
    {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
]


def test_listed_input_items_are_the_sdks_response_items() -> None:
    listed = listed_items(STORED_ITEMS, "resp_abc")
    parsed = [TypeAdapter(ResponseItem).validate_python(item) for item in listed]
    assert [item.type for item in parsed] == [item["type"] for item in STORED_ITEMS]
    assert [item.id for item in parsed][:3] == ["msg_abc_0", "msg_abc_1", "rs_1"]
    assert parsed[4].id == "fc_1"  # an item's own id is kept
    assert len({item.id for item in parsed}) == len(parsed)


def test_item_pages_follow_the_cursor() -> None:
    items = [{"id": f"i{n}"} for n in range(5)]
    first = item_page(items, limit=2)
    assert [i["id"] for i in first["data"]] == ["i4", "i3"] and first["has_more"] is True
    rest = item_page(items, limit=2, after=first["last_id"])
    assert [i["id"] for i in rest["data"]] == ["i2", "i1"]
    last = item_page(items, order="asc", limit=3, after="i2")
    assert [i["id"] for i in last["data"]] == ["i3", "i4"] and last["has_more"] is False
