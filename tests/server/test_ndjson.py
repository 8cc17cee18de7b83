"""NDJSON lines of streamed responses: compact UTF-8 JSON, whatever a model put in them."""

from __future__ import annotations

import json

from ollamapy.server.http import ndjson_line


def test_a_line_is_compact_utf8_json_with_one_newline() -> None:
    line = ndjson_line({"response": "héllo 👋", "done": False})
    assert line == '{"response":"héllo 👋","done":false}\n'.encode()


def test_integers_beyond_64_bits_in_tool_arguments_still_serialize() -> None:
    event = {"message": {"tool_calls": [{"function": {"arguments": {"n": 2**70}}}]}}
    line = ndjson_line(event)
    assert line.endswith(b"\n") and json.loads(line) == event


def test_non_string_keys_become_strings_as_json_would_write_them() -> None:
    assert json.loads(ndjson_line({"counts": {1: "a"}})) == {"counts": {"1": "a"}}
