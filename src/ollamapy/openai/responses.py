"""Completion events → OpenAI responses: chat completions, text completions and their chunks.

The one completion path yields typed events (`Delta`s of text and tool calls, then one
`Final` with the stop reason and token counts); this module only reshapes them. Streams
close the event iterator when they stop early, so a runner is never held by an
abandoned request. Events that end without their `Final` are a failed completion
(`RunnerError`): no stop reason or token count is made up for them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ollamapy.chat.events import Delta, Final
from ollamapy.chat.events import Event as CompletionEvent
from ollamapy.chat.messages import ToolCall
from ollamapy.errors import RunnerError
from ollamapy.openai.stream import aclose
from ollamapy.types.logprobs import TokenLogprob

Event = dict[str, Any]

SYSTEM_FINGERPRINT = "fp_ollama"
NO_FINAL = "the completion ended without a final event"


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


def usage(final: Final) -> Event:
    """Token counts of the final event as OpenAI's `usage`: the whole prompt, and in
    `prompt_tokens_details.cached_tokens` the part of it served from the KV cache."""
    prompt = final.prompt_eval_count
    completion = final.eval_count
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": final.prompt_cached_count},
    }


def finish_reason(final: Final, called_tools: bool) -> str:
    """`tool_calls` once any call was made; otherwise the native reason (`stop`, `length`)."""
    if called_tools:
        return "tool_calls"
    return final.done_reason or "stop"


def new_call_id() -> str:
    return f"call_{secrets.token_hex(4)}"


def tool_call(call: ToolCall, index: int) -> Event:
    """A tool call as OpenAI's, with its arguments encoded as a JSON string."""
    arguments = json.dumps(dict(call.arguments), ensure_ascii=False, separators=(",", ":"))
    return {
        "id": call.id or new_call_id(),
        "index": index,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def token_logprob(entry: TokenLogprob) -> Event:
    """One token as OpenAI's `ChatCompletionTokenLogprob` (`bytes` and `top_logprobs`
    always present, as OpenAI writes them)."""
    return {
        **_alternative(entry),
        "top_logprobs": [_alternative(top) for top in entry.top_logprobs],
    }


def _alternative(entry: TokenLogprob) -> Event:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(entry.bytes)}


def chat_logprobs(entries: Sequence[TokenLogprob]) -> Event:
    """A choice's `logprobs` object: `{"content": [...]}`."""
    return {"content": [token_logprob(entry) for entry in entries]}


def completion_logprobs(entries: Sequence[TokenLogprob], offset: int) -> Event:
    """A text completion choice's `logprobs`: the legacy parallel lists (`tokens`,
    `token_logprobs`, `top_logprobs` as token -> logprob maps, `text_offset` counted in
    characters from `offset`), plus the `content` list Ollama's layer sends there."""
    offsets: list[int] = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [{t.token: t.logprob for t in entry.top_logprobs} for entry in entries],
        "text_offset": offsets,
        **chat_logprobs(entries),
    }


def usage_chunk(meta: ResponseMeta, kind: str, final: Final) -> Event:
    """The extra last chunk of `stream_options.include_usage`: no choices, just usage."""
    return {**meta.envelope(kind), "choices": [], "usage": usage(final)}


# ----------------------------------------------------------------------------- chat

CHAT_CHUNK = "chat.completion.chunk"


def _reasoning_apart(event: CompletionEvent) -> tuple[CompletionEvent, ...]:
    """As Ollama streams it: a delta with both reasoning and an answer goes out as two
    chunks, the reasoning first (clients show one or the other per chunk)."""
    if not isinstance(event, Delta) or not event.thinking:
        return (event,)
    if not event.content and not event.tool_calls:
        return (event,)
    return Delta(thinking=event.thinking), replace(event, thinking="")


@dataclass
class ChatStream:
    """Turns completion events into chunks; remembers what earlier chunks already said."""

    meta: ResponseMeta
    role_sent: bool = False
    tool_calls: int = 0
    """Calls sent so far: each call's `index`, which clients use to assemble them."""

    def chunk(self, event: CompletionEvent) -> Event:
        delta: Event = {} if self.role_sent else {"role": "assistant"}
        self.role_sent = True
        reason = None
        if isinstance(event, Delta):
            delta["content"] = event.content
            if event.thinking:
                delta["reasoning"] = event.thinking
            if event.tool_calls:
                delta["tool_calls"] = self._calls(event.tool_calls)
        else:
            delta["content"] = ""
            reason = finish_reason(event, self.tool_calls > 0)
        choice = {"index": 0, "delta": delta, "finish_reason": reason}
        if isinstance(event, Delta) and event.logprobs:
            choice["logprobs"] = chat_logprobs(event.logprobs)
        return {**self.meta.envelope(CHAT_CHUNK), "choices": [choice]}

    def _calls(self, calls: Sequence[ToolCall]) -> list[Event]:
        converted = [tool_call(call, self.tool_calls + i) for i, call in enumerate(calls)]
        self.tool_calls += len(converted)
        return converted


async def chat_chunks(
    meta: ResponseMeta, events: AsyncIterator[CompletionEvent], *, include_usage: bool
) -> AsyncIterator[Event]:
    """The chunks of a streamed chat completion (without SSE framing)."""
    stream = ChatStream(meta)
    try:
        async for event in events:
            for part in _reasoning_apart(event):
                yield stream.chunk(part)
            if isinstance(event, Final):
                if include_usage:
                    yield usage_chunk(meta, CHAT_CHUNK, event)
                return
    finally:
        await aclose(events)
    raise RunnerError(NO_FINAL)


@dataclass
class _Collected:
    content: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    calls: list[Event] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


async def collect_chat(meta: ResponseMeta, events: AsyncIterator[CompletionEvent]) -> Event:
    """A whole `chat.completion` object from a completion's events (`stream: false`)."""
    got = _Collected()
    try:
        async for event in events:
            if isinstance(event, Final):
                return chat_completion(meta, got, event)
            got.content.append(event.content)
            got.thinking.append(event.thinking)
            got.logprobs.extend(event.logprobs)
            for call in event.tool_calls:
                got.calls.append(tool_call(call, len(got.calls)))
    finally:
        await aclose(events)
    raise RunnerError(NO_FINAL)


def chat_completion(meta: ResponseMeta, got: _Collected, final: Final) -> Event:
    message: Event = {"role": "assistant", "content": "".join(got.content)}
    if any(got.thinking):
        message["reasoning"] = "".join(got.thinking)
    if got.calls:
        message["tool_calls"] = got.calls
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason(final, bool(got.calls)),
    }
    if got.logprobs:
        choice["logprobs"] = chat_logprobs(got.logprobs)
    return {**meta.envelope("chat.completion"), "choices": [choice], "usage": usage(final)}


# ----------------------------------------------------------------------------- completions

TEXT_COMPLETION = "text_completion"


def completion_choice(
    text: str, reason: str | None, logprobs: Sequence[TokenLogprob] = (), offset: int = 0
) -> Event:
    """One choice; `logprobs` (of the tokens in `text` after an echoed prompt of `offset`
    characters) in the legacy shape when there are any, else null."""
    shaped = completion_logprobs(logprobs, offset) if logprobs else None
    return {"text": text, "index": 0, "logprobs": shaped, "finish_reason": reason}


async def completion_chunks(
    meta: ResponseMeta,
    events: AsyncIterator[CompletionEvent],
    *,
    include_usage: bool,
    echo: str = "",
) -> AsyncIterator[Event]:
    """The chunks of a streamed text completion; `echo` is the prompt, to repeat first."""
    prefix = echo
    sent = 0  # characters sent so far: where this chunk's tokens start
    try:
        async for event in events:
            final = event if isinstance(event, Final) else None
            reason = None if final is None else finish_reason(final, False)
            text = prefix + (event.content if isinstance(event, Delta) else "")
            logprobs = event.logprobs if isinstance(event, Delta) else ()
            choice = completion_choice(text, reason, logprobs, sent + len(prefix))
            sent += len(text)
            prefix = ""
            yield {**meta.envelope(TEXT_COMPLETION), "choices": [choice]}
            if final is not None:
                if include_usage:
                    yield usage_chunk(meta, TEXT_COMPLETION, final)
                return
    finally:
        await aclose(events)
    raise RunnerError(NO_FINAL)


async def collect_completion(
    meta: ResponseMeta, events: AsyncIterator[CompletionEvent], *, echo: str = ""
) -> Event:
    """A whole `text_completion` object from a completion's events (`stream: false`)."""
    pieces = [echo]
    logprobs: list[TokenLogprob] = []
    try:
        async for event in events:
            if isinstance(event, Final):
                reason = finish_reason(event, False)
                choice = completion_choice("".join(pieces), reason, logprobs, len(echo))
                envelope = meta.envelope(TEXT_COMPLETION)
                return {**envelope, "choices": [choice], "usage": usage(event)}
            pieces.append(event.content)
            logprobs.extend(event.logprobs)
    finally:
        await aclose(events)
    raise RunnerError(NO_FINAL)
