"""JSON bytes exactly as Go's `encoding/json` writes them.

Ollama writes manifests with `json.NewEncoder(f).Encode(m)`: compact separators, object
keys in struct-field order, `<`, `>`, `&`, U+2028 and U+2029 escaped as `\\uXXXX`, and a
trailing newline. A manifest's digest is the sha256 of those bytes, so matching them
byte for byte is what makes our `ollama list` digests equal Ollama's for the same model.
"""

from __future__ import annotations

import json

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json_bytes(value: object, *, newline: bool = True) -> bytes:
    """Encode `value` (dicts keep insertion order) as Go's json.Encoder would.

    The escaped characters can only occur inside JSON strings (structural characters
    are ASCII punctuation other than these), so replacing them after encoding is safe.

    >>> go_json_bytes({"a": "<b>", "n": [1, 2]})
    b'{"a":"\\\\u003cb\\\\u003e","n":[1,2]}\\n'
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    if newline:
        text += "\n"
    return text.encode("utf-8")
