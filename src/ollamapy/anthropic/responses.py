"""Completion events -> Anthropic Messages: the `message` object and its stream events.

The one completion path yields `Delta`s (trace, text, completed tool calls) and one
`Final`; this module reshapes them. Blocks come in the order the model wrote them:
consecutive trace pieces form one `thinking` block, consecutive text one `text` block, and
each tool call its own `tool_use` block (its whole input sent as one `input_json_delta`,
since the native path hands over a call once it is complete).

Usage follows Anthropic's meaning: `input_tokens` is the part of the prompt that was
evaluated, `cache_read_input_tokens` the part the KV prefix cache served (their sum is the
whole prompt). The stream's `message_start` is sent once the model has produced its first
event, so a failure before that is still an HTTP status; the prompt's size is known only at
the end, so `message_start` carries zeros and `message_delta` the totals (cumulative, as
Anthropic's are, and as its SDK reads them).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ollamapy.chat.events import Delta, Final
from ollamapy.chat.events import Event as CompletionEvent
from ollamapy.chat.messages import ToolCall
from ollamapy.errors import RunnerError

Json = dict[str, Any]
StreamEvent = tuple[str, Json]
"""An SSE event: its name (`event:` line) and its payload (`data:` line)."""

NO_FINAL = "the completion ended without a final event"
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id in Anthropic's shape: `msg_` or `toolu_` and 24 letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def tool_use_id(call: ToolCall) -> str:
    """The native call id (`call_xxxxxxxx`) as a `toolu_` id; clients send it back as is."""
    suffix = call.id.removeprefix("call_") if call.id else ""
    return "toolu_" + suffix if suffix else new_id("toolu_")


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What every event of one response shares: its id, the model name asked for, and the
    request's `stop_sequences` (only those are reported as `stop_sequence`: a Modelfile's
    own stop strings end a turn the way its end-of-turn token does)."""

    id: str
    model: str
    stop_sequences: tuple[str, ...] = ()

    @classmethod
    def new(cls, model: str, stop_sequences: Sequence[str] | None = None) -> MessageMeta:
        return cls(new_id("msg_"), model, tuple(stop_sequences or ()))


def usage(final: Final | None) -> Json:
    """Anthropic's usage: evaluated input, cache-served input, output (zeros before the end)."""
    if final is None:
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    cached = min(final.prompt_cached_count, final.prompt_eval_count)
    return {
        "input_tokens": final.prompt_eval_count - cached,
        "output_tokens": final.eval_count,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


def stop_reason(
    final: Final, called_tools: bool, stop_sequences: Sequence[str] = ()
) -> tuple[StopReason, str | None]:
    """`stop_reason` and `stop_sequence`: a call made is `tool_use`; one of the request's
    `stop_sequences` that ended the answer is `stop_sequence` (naming it); running out of
    `max_tokens` (or of context) is `max_tokens`; anything else the end of the turn."""
    if called_tools:
        return "tool_use", None
    if final.stop_sequence is not None and final.stop_sequence in stop_sequences:
        return "stop_sequence", final.stop_sequence
    if final.done_reason == "length":
        return "max_tokens", None
    return "end_turn", None


def tool_use_block(call: ToolCall, *, with_input: bool = True) -> Json:
    return {
        "type": "tool_use",
        "id": tool_use_id(call),
        "name": call.name,
        "input": dict(call.arguments) if with_input else {},
    }


def arguments_json(call: ToolCall) -> str:
    return json.dumps(dict(call.arguments), ensure_ascii=False, separators=(",", ":"))


def message_object(meta: MessageMeta, content: list[Json], final: Final | None) -> Json:
    """The `message` object: whole (with `final`) or as `message_start` carries it."""
    reason: str | None = None
    sequence: str | None = None
    if final is not None:
        called = any(block["type"] == "tool_use" for block in content)
        reason, sequence = stop_reason(final, called, meta.stop_sequences)
    return {
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(final),
    }


# ----------------------------------------------------------------------------- whole


@dataclass
class _Blocks:
    """The content blocks of a whole message, merged as the stream's blocks would be."""

    blocks: list[Json] = field(default_factory=list)

    def add(self, delta: Delta) -> None:
        if delta.thinking:
            self._extend("thinking", delta.thinking)
        if delta.content:
            self._extend("text", delta.content)
        self.blocks.extend(tool_use_block(call) for call in delta.tool_calls)

    def _extend(self, kind: Literal["text", "thinking"], text: str) -> None:
        last = self.blocks[-1] if self.blocks else None
        if last is not None and last["type"] == kind:
            last[kind] += text
        elif kind == "thinking":
            self.blocks.append({"type": "thinking", "thinking": text, "signature": ""})
        else:
            self.blocks.append({"type": "text", "text": text})


async def collect_message(meta: MessageMeta, events: AsyncIterator[CompletionEvent]) -> Json:
    """A whole `message` object from a completion's events (`stream: false`)."""
    blocks = _Blocks()
    try:
        async for event in events:
            if isinstance(event, Final):
                return message_object(meta, blocks.blocks, event)
            blocks.add(event)
    finally:
        await aclose(events)
    raise RunnerError(NO_FINAL)


# ----------------------------------------------------------------------------- stream

PING: StreamEvent = ("ping", {"type": "ping"})


@dataclass
class MessageStream:
    """Turns completion events into stream events; remembers which block is open."""

    meta: MessageMeta
    index: int = -1
    """The index of the last block started."""
    open: Literal["text", "thinking"] | None = None
    called_tools: bool = False

    def start(self) -> StreamEvent:
        return "message_start", {
            "type": "message_start",
            "message": message_object(self.meta, [], None),
        }

    def events(self, event: CompletionEvent) -> list[StreamEvent]:
        if isinstance(event, Final):
            return [*self._close(), *self._finish(event)]
        out: list[StreamEvent] = []
        if event.thinking:
            out += self._text("thinking", event.thinking)
        if event.content:
            out += self._text("text", event.content)
        for call in event.tool_calls:
            out += self._tool_use(call)
        return out

    def _text(self, kind: Literal["text", "thinking"], text: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self.open != kind:
            out += self._close()
            block = {"type": "text", "text": ""}
            if kind == "thinking":
                block = {"type": "thinking", "thinking": "", "signature": ""}
            out.append(self._block_start(block))
            self.open = kind
        delta = {"type": f"{kind}_delta", kind: text}
        out.append(self._block_delta(delta))
        return out

    def _tool_use(self, call: ToolCall) -> list[StreamEvent]:
        self.called_tools = True
        out = self._close()
        out.append(self._block_start(tool_use_block(call, with_input=False)))
        delta = {"type": "input_json_delta", "partial_json": arguments_json(call)}
        out.append(self._block_delta(delta))
        out.append(self._block_stop())
        return out

    def _block_start(self, block: Json) -> StreamEvent:
        self.index += 1
        payload = {"type": "content_block_start", "index": self.index, "content_block": block}
        return "content_block_start", payload

    def _block_delta(self, delta: Json) -> StreamEvent:
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": self.index,
            "delta": delta,
        }

    def _block_stop(self) -> StreamEvent:
        return "content_block_stop", {"type": "content_block_stop", "index": self.index}

    def _close(self) -> list[StreamEvent]:
        if self.open is None:
            return []
        self.open = None
        return [self._block_stop()]

    def _finish(self, final: Final) -> list[StreamEvent]:
        reason, sequence = stop_reason(final, self.called_tools, self.meta.stop_sequences)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage(final),
        }
        return [("message_delta", delta), ("message_stop", {"type": "message_stop"})]


async def message_events(
    meta: MessageMeta, events: AsyncIterator[CompletionEvent]
) -> AsyncIterator[StreamEvent]:
    """The stream events of a message: `message_start` and a `ping` once the model has
    produced its first event, the blocks, then `message_delta` and `message_stop`."""
    stream = MessageStream(meta)
    started = False
    try:
        async for event in events:
            if not started:
                started = True
                yield stream.start()
                yield PING
            for item in stream.events(event):
                yield item
            if isinstance(event, Final):
                return
    finally:
        await aclose(events)
    raise RunnerError(NO_FINAL)


async def aclose(events: AsyncIterator[Any]) -> None:
    """Close an event stream early, so the native path releases its runner at once."""
    close: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if close is not None:
        await close()
