"""Go's `encoding/json.Marshal` output for Python values (Ollama's `json` template function).

Go's encoder differs from Python's `json.dumps` in ways models were trained on: it is compact,
sorts map keys, escapes `<`, `>` and `&` as `\\u003c` etc., and prints floats its own way.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeGuard, runtime_checkable

from ollamapy.template.gofmt import format_float, sorted_items


@runtime_checkable
class GoJSONMarshaler(Protocol):
    """A value that chooses its own JSON form, like a Go type with `MarshalJSON`."""

    def go_json(self) -> object: ...


@dataclasses.dataclass(frozen=True)
class OrderedObject:
    """A JSON object whose keys keep their order (a Go struct or ordered map), not sorted."""

    items: tuple[tuple[str, object], ...]


class UnsupportedValueError(ValueError):
    """NaN and infinities cannot be encoded, as in Go."""


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES |= {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_ESCAPES |= {"\u2029": "\\u2029", "\b": "\\u0008", "\f": "\\u000c"}


def marshal(value: object) -> str:
    """Encode `value` compactly the way Go's json.Marshal would."""
    return "".join(_encode(value))


def _is_marshaler(value: object) -> TypeGuard[GoJSONMarshaler]:
    """`isinstance(value, GoJSONMarshaler)` without the runtime Protocol check's cost."""
    return callable(getattr(type(value), "go_json", None))


def _encode(value: object) -> list[str]:
    if _is_marshaler(value):
        return _encode(value.go_json())
    if value is None:
        return ["null"]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float):
        return [encode_float(value)]
    if isinstance(value, str):
        return [encode_string(value)]
    if isinstance(value, OrderedObject):
        return _encode_object(list(value.items))
    if isinstance(value, Mapping):
        return _encode_object([(str(k), v) for k, v in sorted_items(value)])
    if isinstance(value, Sequence):
        return _encode_array(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return _encode_object([(f.name, getattr(value, f.name)) for f in fields])
    return [encode_string(str(value))]


def _encode_object(items: list[tuple[str, object]]) -> list[str]:
    out = ["{"]
    for i, (key, item) in enumerate(items):
        if i:
            out.append(",")
        out.append(encode_string(key))
        out.append(":")
        out.extend(_encode(item))
    out.append("}")
    return out


def _encode_array(items: Sequence[object]) -> list[str]:
    out = ["["]
    for i, item in enumerate(items):
        if i:
            out.append(",")
        out.extend(_encode(item))
    out.append("]")
    return out


def encode_string(text: str) -> str:
    """A JSON string with Go's HTML-safe escaping."""
    out = ['"']
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def encode_float(value: float) -> str:
    """Go's float encoding: plain decimals, exponent form only below 1e-6 or from 1e21."""
    if math.isnan(value) or math.isinf(value):
        raise UnsupportedValueError(f"json: unsupported value: {format_float(value)}")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value)) if value != 0 or math.copysign(1, value) > 0 else "-0"
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        text = repr(value)
        mantissa, _, exp = text.partition("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{int(exp.lstrip('+-'))}"
    return format(decimal.Decimal(repr(value)), "f")
