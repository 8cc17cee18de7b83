"""Ollama's `format` field as a GBNF grammar for llama.cpp's grammar sampler.

`"json"` allows any JSON object (like Ollama); a JSON schema object is converted with
llama-cpp-python's schema converter, so the output parses and validates against it.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp import llama_grammar

from ollamapy.errors import BadRequestError


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
