"""Native events → OpenAI responses: chat completions, text completions and their chunks.

The native path yields /api/chat or /api/generate events (text pieces, then one `done`
event with the stop reason and token counts); this module only reshapes them. Streams
close the native iterator when they stop early, so a runner is never held by an
abandoned request.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ollamapy.openai.stream import aclose

Event = dict[str, Any]

SYSTEM_FINGERPRINT = "fp_ollama"


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every object of one response shares: its id, model and creation time."""

    id: str
    model: str
    created: int

    @classmethod
    def new(cls, prefix: str, model: str) -> ResponseMeta:
        """`prefix` is `chatcmpl` or `cmpl`; OpenAI's ids look like `chatcmpl-<n>`."""
        return cls(f"{prefix}-{secrets.randbelow(10**9)}", model, int(time.time()))

    def envelope(self, kind: str) -> Event:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }


def usage(final: Mapping[str, Any]) -> Event:
    """Token counts of a native `done` event as OpenAI's `usage`: the whole prompt, and in
    `prompt_tokens_details.cached_tokens` the part of it served from the KV cache."""
    prompt = int(final.get("prompt_eval_count") or 0)
    completion = int(final.get("eval_count") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(final.get("prompt_cached_count") or 0)},
    }


def finish_reason(final: Mapping[str, Any], called_tools: bool) -> str:
    """`tool_calls` once any call was made; otherwise the native reason (`stop`, `length`)."""
    if called_tools:
        return "tool_calls"
    return str(final.get("done_reason") or "stop")


def new_call_id() -> str:
    return f"call_{secrets.token_hex(4)}"


def tool_call(call: Mapping[str, Any], index: int) -> Event:
    """A native tool call as OpenAI's, with its arguments re-encoded as a JSON string."""
    function = call.get("function") or {}
    arguments = json.dumps(
        function.get("arguments") or {}, ensure_ascii=False, separators=(",", ":")
    )
    return {
        "id": call.get("id") or new_call_id(),
        "index": index,
        "type": "function",
        "function": {"name": function.get("name", ""), "arguments": arguments},
    }


def usage_chunk(meta: ResponseMeta, kind: str, final: Mapping[str, Any]) -> Event:
    """The extra last chunk of `stream_options.include_usage`: no choices, just usage."""
    return {**meta.envelope(kind), "choices": [], "usage": usage(final)}


# ----------------------------------------------------------------------------- chat

CHAT_CHUNK = "chat.completion.chunk"


@dataclass
class ChatStream:
    """Turns native chat events into chunks; remembers what earlier chunks already said."""

    meta: ResponseMeta
    role_sent: bool = False
    tool_calls: int = 0
    """Calls sent so far: each call's `index`, which clients use to assemble them."""

    def chunk(self, event: Mapping[str, Any]) -> Event:
        message = event.get("message") or {}
        delta: Event = {} if self.role_sent else {"role": "assistant"}
        self.role_sent = True
        delta["content"] = message.get("content") or ""
        if message.get("thinking"):
            delta["reasoning"] = message["thinking"]
        if message.get("tool_calls"):
            delta["tool_calls"] = self._calls(message["tool_calls"])
        done = bool(event.get("done"))
        reason = finish_reason(event, self.tool_calls > 0) if done else None
        choice = {"index": 0, "delta": delta, "finish_reason": reason}
        return {**self.meta.envelope(CHAT_CHUNK), "choices": [choice]}

    def _calls(self, calls: list[Mapping[str, Any]]) -> list[Event]:
        converted = [tool_call(call, self.tool_calls + i) for i, call in enumerate(calls)]
        self.tool_calls += len(converted)
        return converted


async def chat_chunks(
    meta: ResponseMeta, events: AsyncIterator[Event], *, include_usage: bool
) -> AsyncIterator[Event]:
    """The chunks of a streamed chat completion (without SSE framing)."""
    stream = ChatStream(meta)
    try:
        async for event in events:
            yield stream.chunk(event)
            if event.get("done"):
                if include_usage:
                    yield usage_chunk(meta, CHAT_CHUNK, event)
                return
    finally:
        await aclose(events)


@dataclass
class _Collected:
    content: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    calls: list[Event] = field(default_factory=list)
    final: Mapping[str, Any] = field(default_factory=dict)


async def collect_chat(meta: ResponseMeta, events: AsyncIterator[Event]) -> Event:
    """A whole `chat.completion` object from a native chat stream (`stream: false`)."""
    got = _Collected()
    try:
        async for event in events:
            message = event.get("message") or {}
            got.content.append(message.get("content") or "")
            got.thinking.append(message.get("thinking") or "")
            for call in message.get("tool_calls") or ():
                got.calls.append(tool_call(call, len(got.calls)))
            if event.get("done"):
                got.final = event
                break
    finally:
        await aclose(events)
    return chat_completion(meta, got)


def chat_completion(meta: ResponseMeta, got: _Collected) -> Event:
    message: Event = {"role": "assistant", "content": "".join(got.content)}
    if any(got.thinking):
        message["reasoning"] = "".join(got.thinking)
    if got.calls:
        message["tool_calls"] = got.calls
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(got.final, bool(got.calls)),
    }
    return {**meta.envelope("chat.completion"), "choices": [choice], "usage": usage(got.final)}


# ----------------------------------------------------------------------------- completions

TEXT_COMPLETION = "text_completion"


def completion_choice(text: str, reason: str | None) -> Event:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}


async def completion_chunks(
    meta: ResponseMeta, events: AsyncIterator[Event], *, include_usage: bool, echo: str = ""
) -> AsyncIterator[Event]:
    """The chunks of a streamed text completion; `echo` is the prompt, to repeat first."""
    prefix = echo
    try:
        async for event in events:
            done = bool(event.get("done"))
            reason = finish_reason(event, False) if done else None
            text = prefix + (event.get("response") or "")
            prefix = ""
            yield {**meta.envelope(TEXT_COMPLETION), "choices": [completion_choice(text, reason)]}
            if done:
                if include_usage:
                    yield usage_chunk(meta, TEXT_COMPLETION, event)
                return
    finally:
        await aclose(events)


async def collect_completion(
    meta: ResponseMeta, events: AsyncIterator[Event], *, echo: str = ""
) -> Event:
    """A whole `text_completion` object from a native generate stream (`stream: false`)."""
    pieces = [echo]
    final: Mapping[str, Any] = {}
    try:
        async for event in events:
            pieces.append(event.get("response") or "")
            if event.get("done"):
                final = event
                break
    finally:
        await aclose(events)
    choice = completion_choice("".join(pieces), finish_reason(final, False))
    return {**meta.envelope(TEXT_COMPLETION), "choices": [choice], "usage": usage(final)}
