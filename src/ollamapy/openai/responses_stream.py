"""Completion events → a Responses API `response` object and its stream of events.

One `ResponseBuilder` turns the native path's typed events (`Delta`s, then one `Final`)
into output items (a `reasoning` item for a thinking model's trace, a `message` with its
`output_text`, one `function_call` per tool call) and, as it goes, the Responses event
sequence: `response.created`, `response.in_progress`, then per item
`response.output_item.added` … its deltas … `response.output_item.done`, and
`response.completed` (or `response.incomplete` when `max_output_tokens` cut it short),
every event numbered by `sequence_number`. A non-streamed request runs the same builder and
keeps only the final object, so both forms always agree.

SSE framing follows OpenAI's: each event is `event: <type>` + `data: <json>`, and the stream
ends with the terminal event (no `[DONE]`). A failure after the first event is reported
in-band: an `error` event, then `response.failed`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ollamapy.chat.events import Delta, Final
from ollamapy.chat.events import Event as CompletionEvent
from ollamapy.chat.messages import ToolCall
from ollamapy.errors import OllamaError, RunnerError
from ollamapy.openai.responses_api import CUSTOM_INPUT
from ollamapy.openai.stream import aclose

log = logging.getLogger(__name__)

Json = dict[str, Any]
Status = Literal["completed", "incomplete"]

NO_FINAL = "the completion ended without a final event"


def new_id(prefix: str) -> str:
    """OpenAI-style ids: `resp_…`, `msg_…`, `rs_…`, `fc_…`, `call_…`."""
    return f"{prefix}_{secrets.token_hex(12)}"


def usage(final: Final) -> Json:
    """Token counts as Responses `usage`; `cached_tokens` is what the KV prefix cache served,
    and the rest of the prompt is what this request wrote to it. The trace's share of the
    output is not counted apart, so `reasoning_tokens` is 0."""
    cached = final.prompt_cached_count
    return {
        "input_tokens": final.prompt_eval_count,
        "input_tokens_details": {
            "cached_tokens": cached,
            "cache_write_tokens": max(final.prompt_eval_count - cached, 0),
        },
        "output_tokens": final.eval_count,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": final.prompt_eval_count + final.eval_count,
    }


@dataclass
class _OpenItem:
    """The output item being streamed: a reasoning trace or a message's text."""

    kind: Literal["reasoning", "message"]
    id: str
    index: int
    text: list[str] = field(default_factory=list)


@dataclass
class ResponseBuilder:
    """Builds one response from completion events, emitting its stream events as it goes.

    `base` is everything the response object echoes from the request (model,
    instructions, tools, sampling, ...); the builder adds id, status, output and usage.
    """

    base: Json
    custom_tools: frozenset[str] = frozenset()
    """Names of the request's custom tools: their calls are `custom_tool_call` items."""
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    output: list[Json] = field(default_factory=list)
    status: str = "in_progress"
    usage: Json | None = None
    error: Json | None = None
    completed_at: int | None = None
    _sequence: int = 0
    _open: _OpenItem | None = None

    # ------------------------------------------------------------------ the object

    def response(self) -> Json:
        """The response object as it stands (in progress, or final once finished)."""
        incomplete = {"reason": "max_output_tokens"} if self.status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "completed_at": self.completed_at,
            "error": self.error,
            "incomplete_details": incomplete,
            **self.base,
            "output": list(self.output),
            "usage": self.usage,
        }

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "incomplete")

    # ------------------------------------------------------------------ events

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def start(self) -> list[Json]:
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    def feed(self, delta: Delta) -> list[Json]:
        """The events for one delta: its trace, then its text, then its completed calls."""
        events: list[Json] = []
        if delta.thinking:
            events += self._text("reasoning", delta.thinking)
        if delta.content:
            events += self._text("message", delta.content)
        for call in delta.tool_calls:
            events += self._close()
            if call.name in self.custom_tools:
                events += self._custom_call(call)
            else:
                events += self._function_call(call)
        return events

    def finish(self, final: Final) -> list[Json]:
        status: Status = "incomplete" if final.done_reason == "length" else "completed"
        events = self._close(status)
        self.status = status
        self.usage = usage(final)
        self.completed_at = int(time.time())
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [*events, self._event(kind, response=self.response())]

    def fail(self, exc: BaseException) -> list[Json]:
        """An `error` event and `response.failed`, for a stream that broke after it began."""
        message = exc.message if isinstance(exc, OllamaError) else (str(exc) or "server error")
        self.status = "failed"
        self.error = {"code": "server_error", "message": message}
        error = self._event("error", code="server_error", message=message, param=None)
        return [error, self._event("response.failed", response=self.response())]

    # ------------------------------------------------------------------ items

    def _text(self, kind: Literal["reasoning", "message"], text: str) -> list[Json]:
        events: list[Json] = []
        if self._open is None or self._open.kind != kind:
            events += self._close()
            events += self._begin(kind)
        item = self._open
        assert item is not None
        item.text.append(text)
        if kind == "reasoning":
            delta = self._event(
                "response.reasoning_summary_text.delta",
                item_id=item.id,
                output_index=item.index,
                summary_index=0,
                delta=text,
            )
        else:
            delta = self._event(
                "response.output_text.delta",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        return [*events, delta]

    def _begin(self, kind: Literal["reasoning", "message"]) -> list[Json]:
        item = _OpenItem(kind, new_id("rs" if kind == "reasoning" else "msg"), len(self.output))
        self._open = item
        self.output.append(self._item(item, "in_progress"))
        added = self._event(
            "response.output_item.added", output_index=item.index, item=self.output[-1]
        )
        where = {"item_id": item.id, "output_index": item.index}
        if kind == "reasoning":
            part = self._event(
                "response.reasoning_summary_part.added",
                **where,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        else:
            part = self._event(
                "response.content_part.added", **where, content_index=0, part=output_text("")
            )
        return [added, part]

    def _close(self, status: Status = "completed") -> list[Json]:
        """End the open item: its text's done events, then `output_item.done`."""
        item = self._open
        if item is None:
            return []
        self._open = None
        text = "".join(item.text)
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "reasoning":
            done = [
                self._event(
                    "response.reasoning_summary_text.done", **where, summary_index=0, text=text
                ),
                self._event(
                    "response.reasoning_summary_part.done",
                    **where,
                    summary_index=0,
                    part={"type": "summary_text", "text": text},
                ),
            ]
        else:
            done = [
                self._event(
                    "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
                ),
                self._event(
                    "response.content_part.done", **where, content_index=0, part=output_text(text)
                ),
            ]
        self.output[item.index] = self._item(item, status)
        final = self._event(
            "response.output_item.done", output_index=item.index, item=self.output[item.index]
        )
        return [*done, final]

    def _item(self, item: _OpenItem, status: str) -> Json:
        text = "".join(item.text)
        if item.kind == "reasoning":
            summary = [{"type": "summary_text", "text": text}] if status != "in_progress" else []
            return {"id": item.id, "type": "reasoning", "summary": summary, "status": status}
        content = [output_text(text)] if status != "in_progress" else []
        return {
            "id": item.id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def _function_call(self, call: ToolCall) -> list[Json]:
        """A completed call, streamed as added, its arguments in one delta, done."""
        arguments = json.dumps(dict(call.arguments), ensure_ascii=False, separators=(",", ":"))
        index = len(self.output)
        item = {
            "id": new_id("fc"),
            "type": "function_call",
            "call_id": call.id or new_id("call"),
            "name": call.name,
            "arguments": "",
            "status": "in_progress",
        }
        self.output.append(item)
        where = {"item_id": item["id"], "output_index": index}
        added = self._event("response.output_item.added", output_index=index, item=dict(item))
        delta = self._event("response.function_call_arguments.delta", **where, delta=arguments)
        done = self._event("response.function_call_arguments.done", **where, arguments=arguments)
        item.update(arguments=arguments, status="completed")
        finished = self._event("response.output_item.done", output_index=index, item=dict(item))
        return [added, delta, done, finished]

    def _custom_call(self, call: ToolCall) -> list[Json]:
        """A completed call of a custom tool: its `input` text, streamed in one delta."""
        value = call.arguments.get(CUSTOM_INPUT)
        text = value if isinstance(value, str) else json.dumps(dict(call.arguments))
        index = len(self.output)
        item = {
            "id": new_id("ctc"),
            "type": "custom_tool_call",
            "call_id": call.id or new_id("call"),
            "name": call.name,
            "input": "",
        }
        self.output.append(item)
        where = {"item_id": item["id"], "output_index": index}
        added = self._event("response.output_item.added", output_index=index, item=dict(item))
        delta = self._event("response.custom_tool_call_input.delta", **where, delta=text)
        done = self._event("response.custom_tool_call_input.done", **where, input=text)
        item["input"] = text
        finished = self._event("response.output_item.done", output_index=index, item=dict(item))
        return [added, delta, done, finished]


def output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


# ----------------------------------------------------------------------------- drivers


async def response_events(
    builder: ResponseBuilder, events: AsyncIterator[CompletionEvent]
) -> AsyncIterator[Json]:
    """The stream's events. The first completion event is awaited before `response.created`
    goes out, so a request the model refuses (a prompt that does not fit, say) still gets
    its HTTP status; after that, a failure ends the stream with `error` + `response.failed`.
    """
    try:
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise RunnerError(NO_FINAL) from None
        for event in builder.start():
            yield event
        try:
            for event in _feed(builder, first):
                yield event
            if builder.finished:
                return
            async for completion in events:
                for event in _feed(builder, completion):
                    yield event
                if builder.finished:
                    return
            raise RunnerError(NO_FINAL)
        except Exception as exc:
            if not isinstance(exc, OllamaError):
                log.exception("Responses stream failed")
            for event in builder.fail(exc):
                yield event
    finally:
        await aclose(events)


def _feed(builder: ResponseBuilder, event: CompletionEvent) -> list[Json]:
    return builder.finish(event) if isinstance(event, Final) else builder.feed(event)


async def collect_response(
    builder: ResponseBuilder, events: AsyncIterator[CompletionEvent]
) -> Json:
    """The final response object of a non-streamed request (failures raise)."""
    try:
        async for event in events:
            _feed(builder, event)
            if builder.finished:
                return builder.response()
    finally:
        await aclose(events)
    raise RunnerError(NO_FINAL)


def sse_frame(event: Json) -> bytes:
    """One event as OpenAI frames Responses events: its type as the SSE event name."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


async def sse_frames(first: Json, rest: AsyncIterator[Json]) -> AsyncIterator[bytes]:
    """The SSE bytes for a first event (already pulled) and the events after it."""
    yield sse_frame(first)
    try:
        async for event in rest:
            yield sse_frame(event)
    finally:
        await aclose(rest)


def base_fields(
    *,
    model: str,
    instructions: str | None,
    tools: Sequence[Json],
    tool_choice: str | Json | None,
    parallel_tool_calls: bool | None,
    temperature: float,
    top_p: float,
    max_output_tokens: int | None,
    effort: str | None,
    text_format: Json | None,
    previous_response_id: str | None,
    store: bool,
    truncation: str,
    metadata: dict[str, str] | None,
    conversation: str | None = None,
) -> Json:
    """What a response object echoes from its request, with OpenAI's defaults filled in."""
    return {
        "model": model,
        "conversation": None if conversation is None else {"id": conversation},
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "metadata": metadata or {},
        "parallel_tool_calls": True if parallel_tool_calls is None else parallel_tool_calls,
        "previous_response_id": previous_response_id,
        "reasoning": {"effort": effort, "summary": None},
        "store": store,
        "temperature": temperature,
        "text": {"format": text_format or {"type": "text"}},
        "tool_choice": "auto" if tool_choice is None else tool_choice,
        "tools": list(tools),
        "top_p": top_p,
        "truncation": truncation,
        "user": None,
    }


# ----------------------------------------------------------------------------- input items


def listed_items(items: Sequence[Json], response_id: str) -> list[Json]:
    """A stored response's input items as `GET /v1/responses/{id}/input_items` lists them:
    each with an id (its own, else one derived from the response's and its position) and
    a status, messages with their content as parts."""
    stem = response_id.removeprefix("resp_")
    return [listed_item(item, f"{stem}_{index}") for index, item in enumerate(items)]


_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
}


def listed_item(item: Json, suffix: str) -> Json:
    kind = item.get("type", "message")
    listed = {**item, "type": kind, "id": item.get("id") or f"{_ID_PREFIXES[kind]}_{suffix}"}
    if kind != "reasoning":
        listed["status"] = item.get("status") or "completed"
    if kind == "message":
        listed["content"] = message_parts(item)
    return listed


def message_parts(item: Json) -> list[Json]:
    """A message's content as parts: an assistant's as `output_text`, others' as input parts
    (images with the `detail` the API always names)."""
    content = item["content"]
    assistant = item.get("role") == "assistant"
    if isinstance(content, str):
        return [output_text(content)] if assistant else [{"type": "input_text", "text": content}]
    parts = []
    for part in content:
        if part["type"] == "output_text":
            parts.append(output_text(part["text"]))
        elif part["type"] == "input_image":
            parts.append({"detail": "auto", **part})
        else:
            parts.append(part)
    return parts


def item_page(
    items: Sequence[Json], *, order: str = "desc", limit: int = 20, after: str | None = None
) -> Json:
    """One page of listed items (OpenAI's cursor list: `after` is the last id seen)."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item["id"] for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else "",
        "last_id": page[-1]["id"] if page else "",
        "has_more": len(ordered) > limit,
    }
