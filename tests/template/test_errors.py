"""Parse and execution errors: TemplateError (HTTP 400) worded and positioned as Go does."""

from __future__ import annotations

import pytest

from ollamapy.errors import TemplateError
from ollamapy.template import Template, TemplateExecError, TemplateSyntaxError

DATA = {"A": None, "L": [1, "x", 3], "M": {"a": 1}, "S": "str"}

PARSE_ERRORS = [
    ("stray brace", "{{ .A } }}", 'template: t:1: unexpected "}" in operand'),
    ("unclosed action", "{{ .A", "template: t:1: unclosed action"),
    ("missing end", "{{ if .A }}x", "template: t:1: unexpected EOF"),
    ("lonely end", "{{ end }}", "template: t:1: unexpected {{end}}"),
    ("lonely else", "{{ else }}", "template: t:1: unexpected {{else}}"),
    ("undefined variable", "{{ $x }}", 'template: t:1: undefined variable "$x"'),
    ("unknown function", "{{ nofunc 1 }}", 'template: t:1: function "nofunc" not defined'),
    ("comment close", "{{/* c */ }}", "template: t:1: comment ends before closing delimiter"),
    ("constant stage", "{{ 1 | 2 }}", "template: t:1: non executable command in pipeline stage 2"),
    ("break outside", "a\n{{ break }}", "template: t:2: {{break}} outside {{range}}"),
    ("bad number", "{{ 3.x }}", 'template: t:1: bad number syntax: "3.x"'),
    ("unterminated", '{{ "abc }}', "template: t:1: unterminated quoted string"),
    (
        "double else",
        "{{ range .A }}{{ else }}{{ else }}{{ end }}",
        "template: t:1: expected end; found {{else}}",
    ),
    ("unclosed paren", "{{ (1 }}", "template: t:1: unclosed left paren"),
    ("stray paren", "{{ 1) }}", 'template: t:1: unexpected ")" in command'),
    ("empty action", "{{ }}", "template: t:1: missing value for command"),
    ("line counting", "a\nb\n\nc {{ if }}", "template: t:4: missing value for if"),
    ("number at the end", "{{ 0", "template: t:1: unclosed action"),  # found by atheris
    ("sign at the end", "{{ -", 'template: t:1: bad number syntax: "-"'),
    ("lone hex escape", r'{{ "\x" }}', "template: t:1: invalid syntax"),  # found by atheris
    ("rune beyond unicode", r'{{ "\U7fffffff" }}', "template: t:1: invalid syntax"),
    ("surrogate rune", r'{{ "\ud800" }}', "template: t:1: invalid syntax"),
    ("octal beyond a byte", r'{{ "\777" }}', "template: t:1: invalid syntax"),
    ("short octal", r'{{ "\0" }}', "template: t:1: invalid syntax"),
]


@pytest.mark.parametrize(
    ("src", "message"), [(s, m) for _, s, m in PARSE_ERRORS], ids=[c[0] for c in PARSE_ERRORS]
)
def test_parse_error(src: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        Template.parse(src, "t")
    assert str(info.value) == message
    assert isinstance(info.value, TemplateError)
    assert info.value.status_code == 400


EXEC_ERRORS = [
    (
        "index range",
        "{{ index .L 5 }}",
        1,
        3,
        "index .L 5",
        "error calling index: index out of range: 5",
    ),
    (
        "mixed int float",
        "{{ eq 1 1.0 }}",
        1,
        3,
        "eq 1 1.0",
        "error calling eq: incompatible types for comparison",
    ),
    (
        "bool order",
        "{{ lt true false }}",
        1,
        3,
        "lt true false",
        "error calling lt: invalid type for comparison",
    ),
    ("nil field", "{{ .A.B.C }}", 1, 5, ".A.B.C", "nil pointer evaluating interface {}.B"),
    (
        "bad slice",
        "{{ slice .L 2 1 }}",
        1,
        3,
        "slice .L 2 1",
        "error calling slice: invalid slice index: 2 > 1",
    ),
    (
        "field of string",
        "x\n  {{ .S.Foo }}",
        2,
        7,
        ".S.Foo",
        "can't evaluate field Foo in type interface {}",
    ),
    (
        "no template",
        '{{ template "nope" }}',
        1,
        12,
        '{{template "nope"}}',
        'template "nope" not defined',
    ),
    ("nil command", "{{ nil }}", 1, 3, "nil", "nil is not a command"),
    (
        "call non-function",
        "{{ call .S }}",
        1,
        3,
        "call .S",
        "error calling call: non-function of type string",
    ),
    ("map with args", "{{ .M.a 1 }}", 1, 5, ".M.a", "a is not a method but has arguments"),
    ("arity", "{{ len 1 2 }}", 1, 3, "len", "wrong number of args for len: want 1 got 2"),
    ("printf format", "{{ printf 1 }}", 1, 10, "1", "expected string; found 1"),
    ("range string", "{{ range .S }}{{ end }}", 1, 9, ".S", "range can't iterate over str"),
    (
        "long context",
        '{{ printf "%s" (index .L 1 2 3 4 5 6) }}',
        1,
        16,
        "index .L 1 2 3 4 5 6",
        "error calling index: index out of range: 2",
    ),
]


@pytest.mark.parametrize(
    ("src", "line", "column", "context", "reason"),
    [c[1:] for c in EXEC_ERRORS],
    ids=[c[0] for c in EXEC_ERRORS],
)
def test_exec_error(src: str, line: int, column: int, context: str, reason: str) -> None:
    template = Template.parse(src, "t")
    with pytest.raises(TemplateExecError) as info:
        template.execute(DATA)
    err = info.value
    shown = context if len(context) <= 20 else context[:20] + "..."
    assert str(err) == f'template: t:{line}:{column}: executing "t" at <{shown}>: {reason}'
    assert (err.line, err.column) == (line, column)
