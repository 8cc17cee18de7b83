"""Forced tool calls as GBNF: the root rule wraps the template's literals around the calls,
and llama.cpp's own grammar parser accepts what we build (checked on the real SmolLM2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamapy.errors import BadRequestError
from ollamapy.runner.grammar import tool_calls_to_grammar
from ollamapy.runner.launch import LaunchArgs
from ollamapy.runner.loader import LoadedModel, load
from ollamapy.runner.native import SamplerChain, init_backend
from ollamapy.runner.protocol import CompletionRequest, ProtocolError, ToolCallGrammar
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.types.options import SamplingOptions

CALL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"const": "get_weather"},
        "arguments": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"enum": ["c", "f"]},
                "days": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            },
            "required": ["city"],
        },
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
QWEN = ToolCallGrammar("<tool_call>\n", CALL, "\n", "\n</tool_call>", 0, ("name", "arguments"))


@pytest.mark.parametrize(
    ("spec", "root"),
    [
        (QWEN, 'root ::= "<tool_call>\\n" call ("\\n" call)* "\\n</tool_call>"'),
        (ToolCallGrammar("", CALL, "\n", "", 1), "root ::= call"),
        (
            ToolCallGrammar("[TOOL_CALLS] [", CALL, "", "]"),
            'root ::= "[TOOL_CALLS] [" call ( call)* "]"',
        ),
    ],
)
def test_root_rule_wraps_the_calls_in_the_templates_text(spec: ToolCallGrammar, root: str) -> None:
    assert tool_calls_to_grammar(spec).splitlines()[0] == root


def test_call_rule_pins_the_name_in_template_order() -> None:
    rules = dict(
        line.split(" ::= ", 1) for line in tool_calls_to_grammar(QWEN).splitlines()[1:] if line
    )
    assert rules["call"].index("call-name-kv") < rules["call"].index("call-arguments-kv")
    assert rules["call-name"] == '"\\"get_weather\\""'


def test_a_schema_the_converter_refuses_is_a_400() -> None:
    spec = ToolCallGrammar("", {"type": "object", "properties": {"a": {"type": "nonsense"}}})
    with pytest.raises(BadRequestError, match="tool parameters cannot be enforced"):
        tool_calls_to_grammar(spec)


@pytest.fixture(scope="module")
def loaded(smollm2: Path) -> Iterator[LoadedModel]:
    init_backend()
    model = load(LaunchArgs(model=str(smollm2), num_ctx=256, parallel=1))
    yield model
    model.close()


@pytest.mark.integration
@pytest.mark.parametrize(
    "spec",
    [
        QWEN,
        ToolCallGrammar("", CALL, "", "", 1),
        ToolCallGrammar("[TOOL_CALLS] [", {"anyOf": [CALL, {"type": "object"}]}, "", "]"),
    ],
)
def test_llama_cpp_accepts_the_grammar(loaded: LoadedModel, spec: ToolCallGrammar) -> None:
    plan = plan_sampler_chain(
        SamplingOptions(),
        n_vocab=loaded.model.n_vocab,
        n_ctx=256,
        grammar=tool_calls_to_grammar(spec),
    )
    SamplerChain(loaded.model, plan, [1])  # llama.cpp refuses a bad grammar here


def test_completion_request_carries_the_tool_grammar_over_the_wire() -> None:
    request = CompletionRequest(prompt="hi", tool_grammar=QWEN)
    wire = json.loads(json.dumps(request.to_json()))
    assert CompletionRequest.from_json(wire) == request
    assert "tool_grammar" not in CompletionRequest(prompt="hi").to_json()


@pytest.mark.parametrize(
    "bad", [{"prefix": 1, "schema": {}}, {"prefix": "", "schema": []}, {"schema": {}, "order": [1]}]
)
def test_a_malformed_tool_grammar_is_a_protocol_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        CompletionRequest.from_json({"prompt": "hi", "tool_grammar": bad})
