"""Ollama's `format` field, and forced tool calls, as GBNF for llama.cpp's grammar sampler.

`"json"` allows any JSON object (like Ollama); a JSON schema object is converted with
llama-cpp-python's schema converter, so the output parses and validates against it.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp import llama_grammar

from ollamapy.errors import BadRequestError
from ollamapy.runner.protocol import ToolCallGrammar


def format_to_grammar(fmt: str | dict[str, Any] | None) -> str | None:
    """Return the GBNF text for `fmt`, or None when the output is unconstrained."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return str(llama_grammar.JSON_GBNF)
    if isinstance(fmt, dict):
        try:
            return str(llama_grammar.json_schema_to_gbnf(json.dumps(fmt)))
        except Exception as exc:  # the converter raises bare Exceptions/KeyErrors
            raise BadRequestError(f"invalid JSON schema in format: {exc}") from exc
    raise BadRequestError(f"invalid format: {fmt!r}")


def tool_calls_to_grammar(spec: ToolCallGrammar) -> str:
    """GBNF for output that is nothing but tool calls in the template's own format.

    Each call is converted by llama.cpp's JSON-schema converter (rule `call`); the root rule
    wraps the calls in the template's literal prefix, separator and suffix. Once the root is
    complete llama.cpp's grammar sampler allows only end-of-generation tokens.
    """
    order = {key: i for i, key in enumerate(spec.order)}
    converter = llama_grammar.SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order=order, allow_fetch=False, dotall=False, raw_pattern=False
    )
    try:
        schema = converter.resolve_refs(spec.schema, "tools")
        converter.visit(schema, "call")  # type: ignore[no-untyped-call]
    except Exception as exc:  # the converter raises bare Exceptions/KeyErrors
        raise BadRequestError(f"tool parameters cannot be enforced: {exc}") from exc
    repeat = "" if spec.max_calls == 1 else f"({_literal(spec.separator)} call)*"
    parts = [_literal(spec.prefix), "call", repeat, _literal(spec.suffix)]
    root = "root ::= " + " ".join(part for part in parts if part)
    rules = converter.format_grammar()  # type: ignore[no-untyped-call]
    return f"{root}\n{rules}\n"


def _literal(text: str) -> str:
    """A GBNF string literal; empty text is no literal at all (left out of the sequence)."""
    return json.dumps(text, ensure_ascii=False) if text else ""
