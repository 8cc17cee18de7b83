"""Checks that Responses API output is what the official `openai` SDK accepts.

Every event is validated against the SDK's own `ResponseStreamEvent` union (pydantic; a
missing or mistyped field fails), numbered 0, 1, 2, ... by `sequence_number`, and fed to the
SDK's stream accumulator (`ResponseStreamState`, what `client.responses.stream()` runs),
which raises on an item finished twice, an index out of order or a response completed with
unfinished items. Response objects are validated against `Response`.
"""

from __future__ import annotations

from typing import Any

import openai
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

EVENTS: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def parse_events(raw: list[dict[str, Any]]) -> list[ResponseStreamEvent]:
    """The events as the SDK's types, after checking their order as the SDK's stream does."""
    events = [EVENTS.validate_python(event) for event in raw]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    assert events[-1].type in TERMINAL
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(event)
    return events


def parse_response(raw: dict[str, Any]) -> Response:
    return Response.model_validate(raw)


def strict_client(url: str) -> openai.OpenAI:
    """The SDK, validating every response and event it parses (it only constructs them,
    unvalidated, by default)."""
    return openai.OpenAI(
        base_url=f"{url}/v1", api_key="ollama", max_retries=0, _strict_response_validation=True
    )
