"""Ollama's native encoding of completion events: `/api/generate` and `/api/chat` objects.

The pipeline yields typed events; this is the one place they become Ollama's JSON objects
(field order as Ollama writes them, every stat in nanoseconds). A non-streamed request
folds its events into the final object here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from ollamapy.chat.events import Delta, Event, Final
from ollamapy.chat.messages import ToolCall
from ollamapy.types.logprobs import TokenLogprob

Json = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def tool_call_json(call: ToolCall) -> Json:
    """A call as Ollama's `message.tool_calls` entry (field order as Go writes it)."""
    function = {"index": call.index, "name": call.name, "arguments": call.arguments}
    return {"id": call.id, "function": function} if call.id else {"function": function}


def logprobs_json(logprobs: Iterable[TokenLogprob]) -> list[Json]:
    """Ollama's `logprobs` list: `{token, logprob, bytes, top_logprobs}` per token."""
    return [entry.to_json() for entry in logprobs]


def stats_json(final: Final) -> Json:
    if final.done_reason in ("load", "unload"):
        return {"done_reason": final.done_reason}
    return {
        "done_reason": final.done_reason,
        "total_duration": final.total_duration,
        "load_duration": final.load_duration,
        "prompt_eval_count": final.prompt_eval_count,
        "prompt_eval_duration": final.prompt_eval_duration,
        "eval_count": final.eval_count,
        "eval_duration": final.eval_duration,
    } | _draft_stats(final)


def _draft_stats(final: Final) -> Json:
    """Speculative decoding's counts (ours, not Ollama's): only when something was
    drafted, so an answer without drafts has exactly Ollama's fields."""
    if not final.draft_count:
        return {}
    return {
        "draft_count": final.draft_count,
        "draft_accepted_count": final.draft_accepted_count,
        "draft_acceptance_rate": round(final.draft_accepted_count / final.draft_count, 4),
    }


# ----------------------------------------------------------------------------- generate


def generate_json(model: str, event: Event, *, with_context: bool) -> Json:
    """One /api/generate object; the final one carries the stats (and `context`)."""
    head: Json = {"model": model, "created_at": now_rfc3339()}
    if isinstance(event, Delta):
        out = {**head, "response": event.content, "done": False}
        if event.thinking:
            out["thinking"] = event.thinking
        if event.logprobs:
            out["logprobs"] = logprobs_json(event.logprobs)
        return out
    out = {**head, "response": "", "done": True, "done_reason": event.done_reason}
    if with_context and event.done_reason not in ("load", "unload"):
        out["context"] = event.context
    out.update(stats_json(event))  # done_reason keeps its place
    return out


async def generate_stream(
    model: str, events: AsyncIterator[Event], *, with_context: bool
) -> AsyncIterator[Json]:
    async for event in events:
        yield generate_json(model, event, with_context=with_context)


async def collect_generate(model: str, events: AsyncIterator[Event], *, with_context: bool) -> Json:
    """For `stream: false`: the final object with the whole response (and every token's
    logprobs, last, where Ollama writes them)."""
    text: list[str] = []
    thinking: list[str] = []
    logprobs: list[TokenLogprob] = []
    async for event in events:
        if isinstance(event, Final):
            out = generate_json(model, event, with_context=with_context)
            out["response"] = "".join(text)
            if thinking:
                out = _after(out, "response", "thinking", "".join(thinking))
            if logprobs:
                out["logprobs"] = logprobs_json(logprobs)
            return out
        text.append(event.content)
        if event.thinking:
            thinking.append(event.thinking)
        logprobs.extend(event.logprobs)
    raise RuntimeError("the completion ended without a final event")


# ----------------------------------------------------------------------------- chat


def message_json(content: str, thinking: str = "", calls: Iterable[ToolCall] = ()) -> Json:
    message: Json = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    tool_calls = [tool_call_json(call) for call in calls]
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def chat_json(model: str, event: Event) -> Json:
    """One /api/chat object; the final one carries the stats."""
    head: Json = {"model": model, "created_at": now_rfc3339()}
    if isinstance(event, Delta):
        message = message_json(event.content, event.thinking, event.tool_calls)
        out = {**head, "message": message, "done": False}
        if event.logprobs:
            out["logprobs"] = logprobs_json(event.logprobs)
        return out
    return {**head, "message": message_json(""), "done": True, **stats_json(event)}


async def chat_stream(model: str, events: AsyncIterator[Event]) -> AsyncIterator[Json]:
    async for event in events:
        yield chat_json(model, event)


async def collect_chat(model: str, events: AsyncIterator[Event]) -> Json:
    """For `stream: false`: the final object with all content joined and every tool call
    (and every token's logprobs, after `done_reason`, where Ollama writes them)."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[ToolCall] = []
    logprobs: list[TokenLogprob] = []
    async for event in events:
        if isinstance(event, Final):
            out = chat_json(model, event)
            out["message"] = message_json("".join(text), "".join(thinking), calls)
            if logprobs:
                out = _after(out, "done_reason", "logprobs", logprobs_json(logprobs))
            return out
        text.append(event.content)
        thinking.append(event.thinking)
        calls.extend(event.tool_calls)
        logprobs.extend(event.logprobs)
    raise RuntimeError("the completion ended without a final event")


def _after(obj: Json, key: str, new_key: str, value: object) -> Json:
    """`obj` with `new_key` inserted right after `key` (Ollama's field order)."""
    out: Json = {}
    for k, v in obj.items():
        out[k] = v
        if k == key:
            out[new_key] = value
    return out
