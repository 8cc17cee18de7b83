"""The functions a template can call: Go's builtins plus the ones Ollama adds.

Each entry records its arity so wrong calls fail with Go's wording. `and`/`or` are absent
here because they evaluate lazily; the executor implements them itself.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ollamapy.template.gofmt import (
    format_value,
    is_go_stringer,
    sprint,
    sprintf,
    sprintln,
    type_name,
)
from ollamapy.template.gojson import OrderedObject, UnsupportedValueError, marshal


class FuncError(Exception):
    """A function rejected its arguments; the executor wraps it as `error calling NAME: ...`."""


@dataclass(frozen=True)
class Func:
    """A callable with Go's arity: `max_args` None means variadic."""

    fn: Callable[..., object]
    min_args: int
    max_args: int | None
    string_first: bool = False


class Missing:
    """Go's invalid reflect.Value: what a missing map key or an absent dot evaluates to."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


def truth(value: object) -> bool:
    """Go's template truth: false, 0, nil and empty strings/collections are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool | int | float | str | Sequence | Mapping):
        return bool(value)
    return True


# -- comparison --------------------------------------------------------------------------------
def _kind(value: object) -> str:
    table: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (str, "string"),
    ]
    for cls, name in table:
        if isinstance(value, cls):
            return name
    return "nil" if value is None or value is MISSING else "other"


def eq(first: object, *others: object) -> bool:
    """True when `first` equals any of `others`; kinds must match, except nil."""
    if not others:
        raise FuncError("missing argument for comparison")
    k1 = _kind(first)
    for other in others:
        k2 = _kind(other)
        if k1 != k2:
            if k1 == "nil" or k2 == "nil":
                continue
            raise FuncError("incompatible types for comparison")
        if k1 == "other" and not _comparable(first):
            raise FuncError(f"non-comparable type {format_value(first)}: {type_name(first)}")
        if k1 == "nil" or first == other:
            return True
    return False


def _comparable(value: object) -> bool:
    return not isinstance(value, Sequence | Mapping)


def ne(a: object, b: object) -> bool:
    return not eq(a, b)


def lt(a: object, b: object) -> bool:
    k1, k2 = _kind(a), _kind(b)
    if k1 not in ("int", "float", "string") or k2 not in ("int", "float", "string"):
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    return bool(a < b)  # type: ignore[operator]


def le(a: object, b: object) -> bool:
    return lt(a, b) or eq(a, b)


def gt(a: object, b: object) -> bool:
    return not le(a, b)


def ge(a: object, b: object) -> bool:
    return not lt(a, b)


# -- collections -------------------------------------------------------------------------------
def length(value: object) -> int:
    if value is None or value is MISSING:
        raise FuncError("len of nil pointer")
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, Sequence | Mapping):
        return len(value)
    raise FuncError(f"len of type {type_name(value)}")


def index(value: object, *keys: object) -> object:
    """`index x 1 2` is x[1][2]; a missing map key gives nil, an out-of-range index fails."""
    for key in keys:
        value = _index_one(value, key)
    return value


def _index_one(value: object, key: object) -> object:
    if value is None or value is MISSING:
        raise FuncError("index of untyped nil")
    if isinstance(value, Mapping):
        return value.get(key, MISSING)
    if isinstance(value, str | Sequence):
        i = _int_index(key, len(value))
        item = value[i]
        return item.encode()[0] if isinstance(value, str) else item
    raise FuncError(f"can't index item of type {type_name(value)}")


def _int_index(key: object, cap: int) -> int:
    if isinstance(key, bool) or not isinstance(key, int):
        raise FuncError(f"cannot index slice/array with type {type_name(key)}")
    if key < 0 or key >= cap:
        raise FuncError(f"index out of range: {key}")
    return key


def slice_(value: object, *bounds: object) -> object:
    """`slice x 1 2` is x[1:2]; strings slice by byte as in Go."""
    if value is None or value is MISSING:
        raise FuncError("slice of untyped nil")
    if len(bounds) > 3:
        raise FuncError(f"too many slice indexes: {len(bounds)}")
    if isinstance(value, str):
        if len(bounds) == 3:
            raise FuncError("cannot 3-index slice a string")
        data = value.encode()
        lo, hi = _slice_bounds(bounds, len(data))
        return data[lo:hi].decode(errors="replace")
    if isinstance(value, Sequence):
        lo, hi = _slice_bounds(bounds, len(value))
        return list(value[lo:hi])
    raise FuncError(f"can't slice item of type {type_name(value)}")


def _slice_bounds(bounds: Sequence[object], size: int) -> tuple[int, int]:
    idx = [_checked_bound(b, size) for b in bounds[:2]]
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else size
    if lo > hi:
        raise FuncError(f"invalid slice index: {lo} > {hi}")
    return lo, hi


def _checked_bound(bound: object, size: int) -> int:
    if isinstance(bound, bool) or not isinstance(bound, int):
        raise FuncError(f"cannot index slice/array with type {type_name(bound)}")
    if bound < 0 or bound > size:
        raise FuncError(f"index out of range: {bound}")
    return bound


def call(fn: object, *args: object) -> object:
    if not callable(fn):
        raise FuncError(f"non-function of type {type_name(fn)}")
    return fn(*args)


# -- escaping ----------------------------------------------------------------------------------
def _joined(args: Sequence[object]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(list(args))


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026"}
_JS |= {"=": "\\u003D"}


def html(*args: object) -> str:
    return "".join(_HTML.get(c, c) for c in _joined(args))


def js(*args: object) -> str:
    out = []
    for c in _joined(args):
        if c in _JS:
            out.append(_JS[c])
        elif ord(c) < 0x20 or not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def urlquery(*args: object) -> str:
    return urllib.parse.quote_plus(_joined(args), safe="-_.~")


# -- Ollama's functions ------------------------------------------------------------------------
def to_json(value: object) -> str:
    """Ollama's `json`: Go's json.Marshal, and an empty string when that fails."""
    try:
        return marshal(None if value is MISSING else value)
    except UnsupportedValueError:
        return ""


_TS_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


def to_typescript_type(prop: object) -> str:
    """Ollama's `toTypeScriptType` for one tool parameter schema.

    Mirrors Ollama's ToolProperty.ToTypeScriptType: `anyOf` alternatives and multi-type lists
    join with ` | `; arrays are `any[]`, objects `Record<string, any>`; anything that is not a
    property schema is `any`.
    """
    schema = _schema_of(prop)
    if schema is None:
        return "any"
    any_of = schema.get("anyOf")
    if isinstance(any_of, Sequence) and any_of:
        return " | ".join(to_typescript_type(p) for p in any_of)
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, Sequence) else []
    if not kinds:
        return "any"
    return " | ".join(_TS_TYPES.get(str(k), "any") for k in kinds)


def _schema_of(prop: object) -> Mapping[str, object] | None:
    if isinstance(prop, Mapping):
        return prop
    as_json = getattr(prop, "go_json", None)
    if callable(as_json):
        value = as_json()
        if isinstance(value, OrderedObject):
            return dict(value.items)
        return value if isinstance(value, Mapping) else None
    return None


def _date_funcs(today: Callable[[], datetime.date]) -> dict[str, Func]:
    def current(*_: object) -> str:
        return today().isoformat()

    def yesterday(*_: object) -> str:
        return (today() - datetime.timedelta(days=1)).isoformat()

    return {"currentDate": Func(current, 0, None), "yesterdayDate": Func(yesterday, 0, None)}


BUILTINS: dict[str, Func] = {
    "call": Func(call, 1, None),
    "eq": Func(eq, 1, None),
    "ge": Func(ge, 2, 2),
    "gt": Func(gt, 2, 2),
    "html": Func(html, 0, None),
    "index": Func(index, 1, None),
    "js": Func(js, 0, None),
    "le": Func(le, 2, 2),
    "len": Func(length, 1, 1),
    "lt": Func(lt, 2, 2),
    "ne": Func(ne, 2, 2),
    "not": Func(lambda v: not truth(v), 1, 1),
    "print": Func(lambda *a: sprint(list(a)), 0, None),
    "printf": Func(lambda f, *a: sprintf(f, list(a)), 1, None, string_first=True),
    "println": Func(lambda *a: sprintln(list(a)), 0, None),
    "slice": Func(slice_, 1, None),
    "urlquery": Func(urlquery, 0, None),
    "json": Func(to_json, 1, 1),
    "toTypeScriptType": Func(to_typescript_type, 1, 1),
}

LAZY = frozenset({"and", "or"})
NAMES = frozenset(BUILTINS) | LAZY | {"currentDate", "yesterdayDate"}


def functions(today: Callable[[], datetime.date]) -> dict[str, Func]:
    """The full function table for one execution (dates come from the injected clock)."""
    return BUILTINS | _date_funcs(today)


def is_stringer(value: object) -> bool:
    return is_go_stringer(value)
