"""Reading and writing one Modelfile value: bare, `"quoted"` or `\"\"\"triple quoted\"\"\"`.

Ollama's rule, kept here: a quoted value may span lines and has no escapes; it ends at the
first line whose text (trailing blanks ignored) ends with the closing quote. A bare value is
the rest of its line with surrounding blanks removed. Writing a value tries quoting styles in
order and keeps the first one that reads back to the same text, which is what makes
`parse(str(modelfile))` round-trip.
"""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.errors import ModelfileError

BLANKS = " \t"
QUOTES = ('"""', '"')


def read_value(text: str, pos: int) -> tuple[str, int] | None:
    """Read the value starting at `pos`; return it and the index of the newline (or end)
    that ends it, or None when an opening quote is never closed."""
    for quote in QUOTES:
        if text.startswith(quote, pos):
            return _read_quoted(text, pos, quote)
    end = line_end(text, pos)
    return text[pos:end].rstrip(BLANKS), end


def line_end(text: str, pos: int) -> int:
    """Index of the newline ending the line that holds `pos`, or len(text)."""
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _read_quoted(text: str, pos: int, quote: str) -> tuple[str, int] | None:
    body = pos + len(quote)
    start = pos
    while True:
        end = line_end(text, start)
        line = text[start:end].rstrip(BLANKS)
        close = start + len(line) - len(quote)
        if close >= body and line.endswith(quote):
            return text[body:close], end
        if end >= len(text):
            return None
        start = end + 1


def render_value(value: str, styles: Sequence[str]) -> str:
    """Write `value` with the first quoting style (`""` meaning bare) that reads back intact.

    Raises ModelfileError for the rare text no Modelfile can hold (e.g. a line ending in `"`
    and another ending in `\"\"\"`).
    """
    for quote in styles:
        text = f"{quote}{value}{quote}"
        if _reads_back(text, value):
            return text
    raise ModelfileError(f"value cannot be written in a Modelfile: {value[:40]!r}")


def _reads_back(text: str, value: str) -> bool:
    if not text or text[0] in BLANKS or text[0] == "\n":
        return False
    return read_value(text, 0) == (value, len(text))
