"""Schemathesis hooks for `api.py` (loaded through `SCHEMATHESIS_HOOKS`).

Random model names are all unknown (a 404 at once), so most generated requests would never
reach a runner. This gives every other generated body (by the parity of its generated
name's length, so runs stay reproducible) the installed model's name instead: those run the
whole path (resolve, options, template, runner) with the rest of the body still fuzzed.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

MODEL = os.environ.get("OLLAMAPY_FUZZ_MODEL", "")


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    named = isinstance(body, dict) and isinstance(body.get("model"), str)
    if MODEL and named and len(body["model"]) % 2 == 0:
        return {**body, "model": MODEL}
    return body
