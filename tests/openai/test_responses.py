"""Completion events → OpenAI chunks and objects, SSE framing, errors, embeddings, models."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from ollamapy.chat.events import Delta, DoneReason, Final
from ollamapy.chat.messages import ToolCall
from ollamapy.errors import BadRequestError, ModelNotFoundError, RunnerError
from ollamapy.openai import (
    SSE_DONE,
    ResponseMeta,
    chat_chunks,
    collect_chat,
    collect_completion,
    completion_chunks,
    embedding_list,
    error_for,
    floats_to_base64,
    model_list,
    model_object,
    sse_body,
    sse_event,
    status_of,
)

META = ResponseMeta("chatcmpl-7", "m", 1_700_000_000)
Event = dict[str, Any]


def done(reason: DoneReason = "stop") -> Final:
    return Final(reason, prompt_eval_count=11, eval_count=3, prompt_cached_count=8)


USAGE_11_OF_WHICH_8_CACHED = {
    "prompt_tokens": 11,  # the whole prompt, cached part included
    "completion_tokens": 3,
    "total_tokens": 14,
    "prompt_tokens_details": {"cached_tokens": 8},
}


class Events:
    """Canned events (completion events, or chunks for the SSE tests) that record whether
    the consumer closed them."""

    def __init__(self, *events: Any, fail: Exception | None = None) -> None:
        self.events = events
        self.fail = fail
        self.closed = False

    async def _gen(self) -> AsyncIterator[Any]:
        try:
            for event in self.events:
                yield event
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True

    def stream(self) -> AsyncIterator[Any]:
        return self._gen()


async def drain(chunks: AsyncIterator[Event]) -> list[Event]:
    return [chunk async for chunk in chunks]


def choice(chunk: Event) -> Event:
    first: Event = chunk["choices"][0]
    return first


# ----------------------------------------------------------------------------- chat stream


async def test_chat_chunks_shape() -> None:
    source = Events(Delta("Hel"), Delta("lo"), done())
    chunks = await drain(chat_chunks(META, source.stream(), include_usage=False))
    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-7" and chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 1_700_000_000 and chunk["model"] == "m"
        assert chunk["system_fingerprint"] == "fp_ollama" and "usage" not in chunk
    assert [choice(c)["delta"] for c in chunks] == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {"content": ""},
    ]
    assert [choice(c)["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert source.closed


@pytest.mark.parametrize("reason", ["stop", "length"])
async def test_chat_finish_reason_follows_done_reason(reason: DoneReason) -> None:
    chunks = await drain(chat_chunks(META, Events(done(reason)).stream(), include_usage=False))
    assert choice(chunks[-1])["finish_reason"] == reason


async def test_include_usage_adds_a_usage_only_chunk() -> None:
    chunks = await drain(chat_chunks(META, Events(Delta("x"), done()).stream(), include_usage=True))
    assert len(chunks) == 3
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == USAGE_11_OF_WHICH_8_CACHED
    assert chunks[-1]["object"] == "chat.completion.chunk"


async def test_streamed_tool_calls() -> None:
    first = ToolCall("weather", {"city": "Paris"}, "call_a")
    second = ToolCall("time", {})
    source = Events(Delta(tool_calls=(first,)), Delta(tool_calls=(second,)), done())
    chunks = await drain(chat_chunks(META, source.stream(), include_usage=False))
    calls = [choice(c)["delta"]["tool_calls"][0] for c in chunks[:2]]
    assert calls[0] == {
        "id": "call_a",
        "index": 0,
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
    }
    assert calls[1]["index"] == 1 and calls[1]["id"].startswith("call_")
    assert calls[1]["function"] == {"name": "time", "arguments": "{}"}
    assert choice(chunks[-1])["finish_reason"] == "tool_calls"


async def test_thinking_is_streamed_as_reasoning() -> None:
    chunks = await drain(
        chat_chunks(META, Events(Delta(thinking="hmm"), done()).stream(), include_usage=False)
    )
    assert choice(chunks[0])["delta"]["reasoning"] == "hmm"
    assert "reasoning" not in choice(chunks[1])["delta"]


async def test_a_delta_with_reasoning_and_content_is_two_chunks() -> None:
    """Ollama's ToStreamChunks: the reasoning chunk first, then the answer's."""
    source = Events(Delta("Four.", thinking="2+2"), done())
    chunks = await drain(chat_chunks(META, source.stream(), include_usage=False))
    deltas = [choice(c)["delta"] for c in chunks]
    assert deltas[0]["reasoning"] == "2+2" and not deltas[0]["content"]
    assert deltas[1]["content"] == "Four." and "reasoning" not in deltas[1]
    assert "role" not in deltas[1]
    assert len(chunks) == 3


async def test_closing_the_chunks_early_closes_the_native_stream() -> None:
    source = Events(Delta("a"), Delta("b"), done())
    chunks = chat_chunks(META, source.stream(), include_usage=False)
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]
    assert source.closed


# ----------------------------------------------------------------------------- chat object


async def test_collect_chat() -> None:
    source = Events(Delta("Hel"), Delta("lo"), done("length"))
    result = await collect_chat(META, source.stream())
    assert result == {
        "id": "chatcmpl-7",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "length",
            }
        ],
        "usage": USAGE_11_OF_WHICH_8_CACHED,
    }
    assert source.closed


async def test_collect_chat_with_tool_calls_and_thinking() -> None:
    call = ToolCall("f", {"x": [1, "é"]})
    source = Events(Delta(thinking="plan"), Delta(tool_calls=(call,)), done())
    result = await collect_chat(META, source.stream())
    message = choice(result)["message"]
    assert message["reasoning"] == "plan" and message["content"] == ""
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x":[1,"é"]}'}
    assert message["tool_calls"][0]["index"] == 0
    assert choice(result)["finish_reason"] == "tool_calls"


# ----------------------------------------------------------------------------- completions


def gen_done(reason: DoneReason = "stop") -> Final:
    return Final(reason, prompt_eval_count=4, eval_count=2)


async def test_completion_chunks() -> None:
    meta = ResponseMeta("cmpl-1", "m", 5)
    source = Events(Delta("a"), Delta("b"), gen_done("length"))
    chunks = await drain(completion_chunks(meta, source.stream(), include_usage=True))
    assert [c["object"] for c in chunks] == ["text_completion"] * 4
    assert [choice(c)["text"] for c in chunks[:3]] == ["a", "b", ""]
    assert [choice(c)["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 6
    assert source.closed


async def test_completion_echo_repeats_the_prompt_once() -> None:
    meta = ResponseMeta("cmpl-1", "m", 5)
    stream = completion_chunks(
        meta, Events(Delta("a"), gen_done()).stream(), include_usage=False, echo="Say: "
    )
    assert [choice(c)["text"] for c in await drain(stream)] == ["Say: a", ""]
    whole = await collect_completion(meta, Events(Delta("a"), gen_done()).stream(), echo="Say: ")
    assert choice(whole)["text"] == "Say: a"


async def test_collect_completion() -> None:
    meta = ResponseMeta("cmpl-1", "m", 5)
    result = await collect_completion(meta, Events(Delta("a"), Delta("b"), gen_done()).stream())
    assert result == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 5,
        "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"text": "ab", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 4,
            "completion_tokens": 2,
            "total_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 0},  # none reported: none cached
        },
    }


def cut_short() -> AsyncIterator[Any]:
    """Events of a completion that stopped without its final event."""
    return Events(Delta("a")).stream()


@pytest.mark.parametrize(
    "consume",
    [
        lambda: drain(chat_chunks(META, cut_short(), include_usage=True)),
        lambda: collect_chat(META, cut_short()),
        lambda: drain(completion_chunks(META, cut_short(), include_usage=True)),
        lambda: collect_completion(META, cut_short()),
    ],
    ids=["chat_chunks", "collect_chat", "completion_chunks", "collect_completion"],
)
async def test_events_without_a_final_are_an_error_not_a_made_up_stop(
    consume: Callable[[], Awaitable[object]],
) -> None:
    """No stop reason or usage is invented: the client sees the request fail (in a stream,
    an error event and no [DONE]), as the native encoders do."""
    with pytest.raises(RunnerError, match="without a final event"):
        await consume()


def test_new_ids_have_openai_prefixes() -> None:
    meta = ResponseMeta.new("chatcmpl", "m")
    prefix, _, number = meta.id.partition("-")
    assert prefix == "chatcmpl" and number.isdigit()
    assert abs(meta.created - datetime.now(UTC).timestamp()) < 5


# ----------------------------------------------------------------------------- SSE


def test_sse_event_framing() -> None:
    assert sse_event({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()


async def collect_bytes(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([part async for part in body])


async def test_sse_body_ends_with_done() -> None:
    source = Events({"n": 2})
    body = await collect_bytes(sse_body({"n": 1}, source.stream()))
    assert body == b'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'
    assert source.closed


async def test_a_client_leaving_early_closes_the_chunks() -> None:
    source = Events({"n": 2}, {"n": 3})
    body = sse_body({"n": 1}, source.stream())
    assert await anext(body) == b'data: {"n":1}\n\n'
    assert await anext(body) == b'data: {"n":2}\n\n'
    await body.aclose()  # type: ignore[attr-defined]
    assert source.closed


async def test_error_after_streaming_began_is_an_error_event_without_done() -> None:
    source = Events({"n": 2}, fail=RunnerError("runner died"))
    body = await collect_bytes(sse_body({"n": 1}, source.stream()))
    frames = body.decode().split("\n\n")
    assert frames[:2] == ['data: {"n":1}', 'data: {"n":2}']
    error = json.loads(frames[2].removeprefix("data: "))
    assert error == {
        "error": {"message": "runner died", "type": "api_error", "param": None, "code": None}
    }
    assert SSE_DONE not in body and frames[3:] == [""]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("exc", "status", "kind", "code"),
    [
        (BadRequestError("bad"), 400, "invalid_request_error", None),
        (ModelNotFoundError("x"), 404, "not_found_error", "model_not_found"),
        (RunnerError("boom"), 500, "api_error", None),
        (ValueError("oops"), 500, "api_error", None),
    ],
)
def test_error_objects(exc: Exception, status: int, kind: str, code: str | None) -> None:
    body = error_for(exc)["error"]
    assert status_of(exc) == status
    assert (body["type"], body["code"], body["param"]) == (kind, code, None)
    assert body["message"] == str(exc)


# ----------------------------------------------------------------------------- embeddings, models


def test_embedding_list_float_and_base64() -> None:
    native = {"model": "e", "embeddings": [[0.5, -1.0], [0.25, 2.0]], "prompt_eval_count": 6}
    floats = embedding_list("e", native, "float")
    assert floats == {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": [0.5, -1.0], "index": 0},
            {"object": "embedding", "embedding": [0.25, 2.0], "index": 1},
        ],
        "model": "e",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }
    encoded = embedding_list("e", native, "base64")["data"][1]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.25, 2.0)


def test_embedding_list_keeps_numpy_rows_for_the_encoder() -> None:
    matrix = np.array([[0.1, -1.0]], dtype=np.float32)
    native = {"model": "e", "embeddings": matrix, "prompt_eval_count": 2}
    row = embedding_list("e", native, "float")["data"][0]["embedding"]
    assert isinstance(row, np.ndarray) and row.dtype == np.float32
    assert np.array_equal(row, matrix[0])


def test_base64_is_little_endian_float32() -> None:
    assert base64.b64decode(floats_to_base64([1.0])) == b"\x00\x00\x80\x3f"


def test_model_objects() -> None:
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    obj = model_object("me/mine:latest", "me", moment)
    assert obj == {
        "id": "me/mine:latest",
        "object": "model",
        "created": 1714564800,
        "owned_by": "me",
    }
    assert model_list([obj]) == {"object": "list", "data": [obj]}
