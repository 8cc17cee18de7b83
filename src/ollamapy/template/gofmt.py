"""Go's `fmt` printing rules for the Python values templates see.

Templates print through fmt, so output must follow its conventions (`[a b]`, `map[k:v]`,
`<nil>`, shortest float formatting, `%!d(string=x)` for a bad verb) byte for byte.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeGuard, runtime_checkable


@runtime_checkable
class GoStringer(Protocol):
    """A value with its own printed form, like a Go type with a `String()` method."""

    def go_string(self) -> str: ...


def is_go_stringer(value: object) -> TypeGuard[GoStringer]:
    """`isinstance(value, GoStringer)`, without the runtime Protocol check's cost (tens of
    microseconds on Python 3.11, paid for every value a template prints)."""
    return callable(getattr(type(value), "go_string", None))


def go_quote(s: str) -> str:
    """strconv.Quote: double-quoted, with Go escapes for controls and non-printables."""
    out = ['"']
    for ch in s:
        out.append(_quote_char(ch, '"'))
    out.append('"')
    return "".join(out)


_SIMPLE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SIMPLE_ESCAPES |= {"\v": "\\v", "\\": "\\\\"}


def _quote_char(ch: str, quote: str) -> str:
    if ch == quote:
        return "\\" + ch
    if ch in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[ch]
    if ch.isprintable() or ch == " ":
        return ch
    code = ord(ch)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def go_quote_rune(code: int) -> str:
    """strconv.QuoteRune: `'a'`."""
    return "'" + _quote_char(chr(code), "'") + "'"


def is_struct(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def type_name(value: object) -> str:
    """The Go type a Python value stands for, as fmt names it in `%!verb(type=value)`."""
    table: list[tuple[type, str]] = [
        (bool, "bool"),
        (int, "int"),
        (float, "float64"),
        (str, "string"),
        (Mapping, "map[string]interface {}"),
        (list, "[]interface {}"),
        (tuple, "[]interface {}"),
    ]
    for cls, name in table:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def format_float(value: float, verb: str = "g", prec: int = -1) -> str:
    """strconv.FormatFloat for the verbs templates use; prec -1 means shortest."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if prec < 0 and verb in "gG":
        return _shortest_g(value, verb)
    if verb in "gG":
        text = f"{value:.{max(prec, 1)}{verb}}"
    else:
        text = f"{value:.{6 if prec < 0 else prec}{verb}}"
    return text


def _shortest_g(value: float, verb: str) -> str:
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(text) + int(exponent) - 1
    neg = "-" if sign else ""
    # Go's shortest %g switches to exponent form below 1e-4 and from 1e6 upwards.
    if exp < -4 or exp >= 6:
        return neg + _e_form(text, exp, verb)
    return neg + _f_form(text, exp)


def _e_form(digits: str, exp: int, verb: str) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    e = "e" if verb == "g" else "E"
    return f"{mantissa}{e}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _f_form(digits: str, exp: int) -> str:
    if exp < 0:
        return "0." + "0" * (-exp - 1) + digits
    whole = digits[: exp + 1].ljust(exp + 1, "0")
    frac = digits[exp + 1 :]
    return whole + ("." + frac if frac else "")


def format_value(value: object, top: bool = True) -> str:
    """fmt's `%v` for one value."""
    if value is None:
        return "<nil>"
    if type(value) is str:
        return value
    if is_go_stringer(value):
        return value.go_string()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        items = sorted_items(value)
        return "map[" + " ".join(f"{format_value(k)}:{format_value(v)}" for k, v in items) + "]"
    if isinstance(value, Sequence | set | frozenset):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    if is_struct(value):
        fields = dataclasses.fields(value)  # type: ignore[arg-type]
        return "{" + " ".join(format_value(getattr(value, f.name)) for f in fields) + "}"
    return str(value)


def sorted_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Map entries in Go's order: keys sorted (numbers numerically, strings bytewise)."""
    try:
        return sorted(mapping.items(), key=lambda kv: kv[0])
    except TypeError:
        return sorted(mapping.items(), key=lambda kv: str(kv[0]))


def sprint(args: Sequence[object]) -> str:
    """fmt.Sprint: a space between operands only when neither side is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg))
    return "".join(out)


def sprintln(args: Sequence[object]) -> str:
    """fmt.Sprintln: always spaces between operands, and a trailing newline."""
    return " ".join(format_value(a) for a in args) + "\n"


_VERB_RE = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?(.)?", re.S)


@dataclasses.dataclass
class _Spec:
    flags: str
    width: int | None
    prec: int | None
    verb: str
    notes: str = ""
    """Go's `%!(BADWIDTH)` / `%!(BADPREC)` for a `*` operand that is too large."""
    overflow: bool = False
    """A literal width or precision too long for Go's parser: the rest of the format is lost."""


TOO_LARGE = 1_000_000
"""Go's fmt refuses widths and precisions beyond a million (`tooLarge`): never pad to more."""


def sprintf(fmt: str, args: Sequence[object]) -> str:
    """fmt.Sprintf with Go's verbs and its error notations for wrong or missing operands."""
    out: list[str] = []
    queue = list(args)
    used = 0
    pos = 0
    while pos < len(fmt):
        pct = fmt.find("%", pos)
        if pct < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:pct])
        m = _VERB_RE.match(fmt, pct)
        assert m is not None
        pos = m.end()
        spec, used = _read_spec(m, queue, used)
        if spec.overflow:  # Go's parsenum gives up at the end of the format
            out.append("%!(NOVERB)")
            break
        out.append(spec.notes)
        if spec.verb == "%":
            out.append("%")
            continue
        if spec.verb == "":
            out.append("%!(NOVERB)")
            continue
        if used >= len(queue):
            out.append(f"%!{spec.verb}(MISSING)")
            continue
        out.append(format_arg(queue[used], spec))
        used += 1
    if used < len(queue):
        extra = ", ".join(f"{type_name(a)}={format_value(a)}" for a in queue[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _read_spec(m: re.Match[str], args: list[object], used: int) -> tuple[_Spec, int]:
    flags, width_text, prec_text, verb = m.group(1), m.group(2), m.group(3), m.group(4) or ""
    width: int | None = None
    prec: int | None = None
    notes = ""
    if width_text == "*":
        width, used = _star(args, used)
        if width is not None and abs(width) > TOO_LARGE:
            width, notes = None, notes + "%!(BADWIDTH)"
    elif width_text:
        width = int(width_text)
    if prec_text == "*":
        prec, used = _star(args, used)
        if prec is not None and abs(prec) > TOO_LARGE:
            prec, notes = None, notes + "%!(BADPREC)"
    elif prec_text is not None:
        prec = int(prec_text or 0)
    overflow = any(_overflows(text) for text in (width_text, prec_text) if text and text != "*")
    if width is not None and width < 0:
        flags, width = flags + "-", -width
    return _Spec(flags, width, prec, verb, notes, overflow), used


def _overflows(digits: str) -> bool:
    """Go's parsenum stops with an error once the number so far exceeds a million and
    another digit follows."""
    return len(digits) > 1 and int(digits[:-1]) > TOO_LARGE


def _star(args: list[object], used: int) -> tuple[int | None, int]:
    if used < len(args) and isinstance(args[used], int):
        return int(args[used]), used + 1  # type: ignore[call-overload]
    return None, used


def format_arg(arg: object, spec: _Spec) -> str:
    """Format one operand for one verb, padding to width."""
    if spec.verb in "sv" and is_go_stringer(arg):
        return _pad(arg.go_string(), spec, numeric=False)
    if arg is None:
        text = "<nil>" if spec.verb in "vT" else f"%!{spec.verb}(<nil>)"
        return _pad(text, spec, numeric=False)
    if spec.verb == "T":
        return _pad(type_name(arg), spec, numeric=False)
    if isinstance(arg, Sequence | Mapping) and not isinstance(arg, str) and spec.verb != "v":
        return _format_container(arg, spec)
    for cls, verbs, fn in _FORMATTERS:
        if isinstance(arg, cls) and spec.verb in verbs:
            return fn(arg, spec)
    if spec.verb == "v":
        return _pad(format_value(arg), spec, numeric=False)
    return _bad_verb(arg, spec)


def _format_container(arg: Sequence[object] | Mapping[object, object], spec: _Spec) -> str:
    if spec.verb in "sxXq" and isinstance(arg, bytes | bytearray):
        return _bad_verb(arg, spec)
    if isinstance(arg, Mapping):
        inner = [f"{format_arg(k, spec)}:{format_arg(v, spec)}" for k, v in sorted_items(arg)]
        return "map[" + " ".join(inner) + "]"
    return "[" + " ".join(format_arg(v, spec) for v in arg) + "]"


def _bad_verb(arg: object, spec: _Spec) -> str:
    return f"%!{spec.verb}({type_name(arg)}={format_value(arg)})"


def _pad(text: str, spec: _Spec, numeric: bool) -> str:
    if spec.width is None or len(text) >= spec.width:
        return text
    fill = spec.width - len(text)
    if "-" in spec.flags:
        return text + " " * fill
    if "0" in spec.flags and numeric:
        sign = text[0] if text[:1] in "+- " and text[:1] != "" else ""
        return sign + "0" * fill + text[len(sign) :]
    return " " * fill + text


def _signed(text: str, negative: bool, spec: _Spec) -> str:
    if negative:
        return "-" + text
    if "+" in spec.flags:
        return "+" + text
    if " " in spec.flags:
        return " " + text
    return text


def _fmt_bool(arg: object, spec: _Spec) -> str:
    return _pad("true" if arg else "false", spec, numeric=False)


_INT_BASES = {"d": "d", "v": "d", "x": "x", "X": "X", "o": "o", "b": "b", "O": "o"}


def _fmt_int(arg: object, spec: _Spec) -> str:
    value = int(arg)  # type: ignore[call-overload]
    verb = spec.verb
    if verb == "c":
        return _pad(chr(value), spec, numeric=False)
    if verb == "q":
        return _pad(go_quote_rune(value), spec, numeric=False)
    if verb == "U":
        return _pad(f"U+{value:04X}", spec, numeric=False)
    digits = format(abs(value), _INT_BASES[verb])
    if spec.prec is not None:
        digits = digits.rjust(spec.prec, "0")
    if "#" in spec.flags:
        digits = {"x": "0x", "X": "0X", "o": "0", "O": "0o", "b": ""}.get(verb, "") + digits
    elif verb == "O":
        digits = "0o" + digits
    return _pad(_signed(digits, value < 0, spec), spec, numeric=spec.prec is None)


def _fmt_float(arg: object, spec: _Spec) -> str:
    value = float(arg)  # type: ignore[arg-type]
    verb = "g" if spec.verb == "v" else spec.verb
    prec = -1 if spec.prec is None else spec.prec
    if verb in "fFeE" and prec < 0:
        prec = 6
    text = format_float(abs(value), verb, prec)
    negative = value < 0 or (value == 0 and math.copysign(1, value) < 0)
    return _pad(_signed(text, negative, spec), spec, numeric=True)


def _fmt_str(arg: object, spec: _Spec) -> str:
    text = str(arg)
    verb = spec.verb
    if spec.prec is not None and verb in "sv":
        text = text[: spec.prec]
    if verb == "q":
        text = go_quote(text)
    elif verb in "xX":
        encoded = text.encode().hex()
        text = encoded.upper() if verb == "X" else encoded
    return _pad(text, spec, numeric=False)


_FORMATTERS: list[tuple[type | tuple[type, ...], str, Callable[[object, _Spec], str]]] = [
    (bool, "vt", _fmt_bool),
    (int, "vdxXobOcqU", _fmt_int),
    (float, "veEfFgG", _fmt_float),
    (str, "svqxX", _fmt_str),
]
