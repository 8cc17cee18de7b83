"""Write the Anthropic replay transcripts in tests/testdata/anthropic/.

    python scripts/make_anthropic_transcripts.py

Each transcript is one request a coding agent sends to `/v1/messages` (or its
`count_tokens`), written from the Messages API's documentation, not captured from any
client: a long system prompt in blocks with `cache_control`, 22 tool definitions, tool
results (text, blocks, errors), parallel calls, thinking, streaming, the small non-streamed
requests agents make on the side. `model_writes` is what the scripted model answers with
(`tests/anthropic/test_replay.py` replays them through the real app and parses every
response with the SDK's own types). Rerun this script after changing it; the files are
committed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.agent_session import TOOLS, system_blocks, tool_result_text

OUT = Path(__file__).resolve().parents[1] / "tests" / "testdata" / "anthropic"
MODEL = "claude-sonnet-4-5-20250929"
"""The name agents ask for; the test makes it an alias of its model with `/api/copy`."""

EXTRA_TOOLS: list[dict[str, Any]] = [
    {
        "name": "mcp__docs__search",
        "description": "Search the project's documentation server.",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    },
    {
        "name": "ListMcpResources",
        "description": "List the resources of the connected servers.",
        "input_schema": {"type": "object", "properties": {"server": {"type": "string"}}},
        "cache_control": {"type": "ephemeral"},
    },
]
ALL_TOOLS = [*TOOLS, *EXTRA_TOOLS]
REMINDER = (
    "<system-reminder>The task list is empty. Do not mention this to the user.</system-reminder>"
)
CALL_LS = '<tool_call>\n{"name": "LS", "arguments": {"path": "src"}}\n</tool_call>'
TRACE = ["<think>\nThe user wants", " the files listed.\n</think>\n\n"]


def agent_body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 32000,
        "system": system_blocks(3000),
        "tools": ALL_TOOLS,
        "messages": messages,
        "metadata": {"user_id": "user_0123_account__session_4567"},
        "stream": True,
        "temperature": 1,
        **extra,
    }


def first_turn() -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": REMINDER},
                {
                    "type": "text",
                    "text": "List the files under src and tell me what each is for.",
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        }
    ]


def later_turns() -> list[dict[str, Any]]:
    return [
        *first_turn(),
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll list the directory first."},
                {"type": "tool_use", "id": "toolu_01A", "name": "LS", "input": {"path": "src"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": tool_result_text(1)}
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": "Read",
                    "input": {"file_path": "a"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01C",
                    "name": "Grep",
                    "input": {"pattern": "def main", "path": "src"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [{"type": "text", "text": "     1\timport sys\n     2\t"}],
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01C",
                    "content": "grep: src: Permission denied",
                    "is_error": True,
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "text", "text": REMINDER},
            ],
        },
    ]


def transcripts() -> dict[str, dict[str, Any]]:
    return {
        "first_turn_streamed_tool_call": {
            "description": "An agent's first turn: system blocks, 22 tools, a reminder block",
            "path": "/v1/messages",
            "body": agent_body(first_turn()),
            "model_writes": ["I'll look.", CALL_LS],
        },
        "tool_results_streamed_text": {
            "description": "A later turn: text + tool_use, parallel calls, an error result",
            "path": "/v1/messages",
            "body": agent_body(later_turns()),
            "model_writes": ["There are ", "twenty modules; ", "`a` imports sys."],
        },
        "thinking_streamed": {
            "description": "Extended thinking on, then a call",
            "path": "/v1/messages",
            "body": agent_body(first_turn(), thinking={"type": "enabled", "budget_tokens": 10000}),
            "model_writes": [*TRACE, CALL_LS],
        },
        "title_not_streamed": {
            "description": "A small side request agents make (a title for the session)",
            "path": "/v1/messages",
            "body": {
                "model": MODEL,
                "max_tokens": 512,
                "system": [{"type": "text", "text": "Write a 3-word title for the request."}],
                "messages": [{"role": "user", "content": "List the files under src."}],
                "temperature": 0,
                "stream": False,
            },
            "model_writes": ["Listing source files"],
        },
        "count_tokens": {
            "description": "How long the next turn's prompt is",
            "path": "/v1/messages/count_tokens",
            "body": {
                "model": MODEL,
                "system": system_blocks(3000),
                "tools": ALL_TOOLS,
                "messages": later_turns(),
            },
            "model_writes": [],
        },
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, transcript in transcripts().items():
        (OUT / f"{name}.json").write_text(json.dumps(transcript, indent=1) + "\n")
        print(OUT / f"{name}.json")


if __name__ == "__main__":
    main()
