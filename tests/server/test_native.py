"""Ollama's native encoding of completion events (field order and shapes as Go writes them)."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.chat.events import Delta, Final
from ollamapy.chat.messages import ToolCall
from ollamapy.server.native import chat_json, generate_json, tool_call_json

TORONTO = {"city": "Toronto"}


@pytest.mark.parametrize(
    ("call_id", "wire"),
    [
        ("", {"function": {"index": 0, "name": "get_weather", "arguments": TORONTO}}),
        (
            "call_x",
            {"id": "call_x", "function": {"index": 0, "name": "get_weather", "arguments": TORONTO}},
        ),
    ],
    ids=["no id", "with id"],
)
def test_tool_call(call_id: str, wire: dict[str, Any]) -> None:
    assert tool_call_json(ToolCall("get_weather", TORONTO, call_id, 0)) == wire


FINAL = Final(
    "stop",
    prompt_eval_count=7,
    prompt_eval_duration=100,
    eval_count=3,
    eval_duration=200,
    load_duration=10,
    total_duration=400,
    context=[1, 2, 3],
)


def test_generate_final_puts_context_before_the_stats() -> None:
    got = generate_json("m", FINAL, with_context=True)
    assert list(got) == [
        "model",
        "created_at",
        "response",
        "done",
        "done_reason",
        "context",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ]
    assert got["context"] == [1, 2, 3] and got["total_duration"] == 400


@pytest.mark.parametrize("reason", ["load", "unload"])
def test_load_and_unload_answers_carry_no_stats(reason: str) -> None:
    got = chat_json("m", Final(reason))  # type: ignore[arg-type]
    assert {k: v for k, v in got.items() if k != "created_at"} == {
        "model": "m",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
    }


def test_a_chat_delta_with_a_call() -> None:
    call = ToolCall("f", {}, "call_1", 0)
    got = chat_json("m", Delta("", tool_calls=(call,)))
    assert got["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {}}}],
    }
    assert got["done"] is False


def test_the_cached_count_stays_off_the_native_wire() -> None:
    final = Final("stop", prompt_eval_count=30, prompt_cached_count=29)
    assert "prompt_cached_count" not in generate_json("m", final, with_context=True)
    assert "prompt_cached_count" not in chat_json("m", final)
    assert chat_json("m", final)["prompt_eval_count"] == 30


def test_speculative_decoding_counts_are_in_the_final_stats_when_drafted() -> None:
    final = Final("stop", eval_count=40, draft_count=32, draft_accepted_count=24)
    for line in (chat_json("m", final), generate_json("m", final, with_context=False)):
        assert line["draft_count"] == 32
        assert line["draft_accepted_count"] == 24
        assert line["draft_acceptance_rate"] == 0.75


def test_an_answer_without_drafts_has_only_ollamas_stats() -> None:
    line = chat_json("m", Final("stop", eval_count=40))
    assert not [key for key in line if key.startswith("draft")]
