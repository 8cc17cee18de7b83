"""The Go template language, case by case; expectations were checked against Go 1.19's
text/template (Go's JSON-decoded numbers aside), so they pin Go's behaviour, not ours."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from ollamapy.template import Template

DATA: dict[str, object] = {
    "A": None,
    "L": [1, "x", 3],
    "M": {"b": 2, "a": 1},
    "N": {"a": [5, 6]},
    "S": "str",
    "F": 2.5,
    "I": 3,
    "E": [],
    "EM": {},
    "T": True,
    "Z": 0,
    "ES": "",
    "W": ["a", "b", "c"],
}

CASES = [
    # text, trimming, comments
    ("plain", "hello", "hello"),
    ("trim both", "a  {{- 1 -}}  b", "a1b"),
    ("trim newlines", "x\n\n{{- 2 }}\n\n{{- 3 -}}\n\t y", "x23y"),
    ("comment", "a{{/* gone */}}b", "ab"),
    ("trimmed comment", "a \n{{- /* gone */ -}}\n b", "ab"),
    ("minus number is not trim", "{{-3}}", "-3"),
    # constants
    (
        "numbers",
        "{{ 1.0 }} {{ 1e3 }} {{ 'a' }} {{ 0x1F }} {{ -3 }} {{ 1_000 }} {{ 0o17 }}",
        "1 1000 97 31 -3 1000 15",
    ),
    (
        "floats",
        "{{ 1.5e3 }} {{ 0.000001 }} {{ 1e100 }} {{ 3.25 }} {{ .F }}",
        "1500 1e-06 1e+100 3.25 2.5",
    ),
    ("strings", '{{ `raw\\n` }} {{ "esc\\t\\x41\\u00e9" }}', "raw\\n esc\tAé"),
    ("bools", "{{ true }} {{ false }}", "true false"),
    # values
    (
        "slice and map",
        "{{ .L }} {{ .M }} {{ .N }} {{ .E }} {{ .EM }}",
        "[1 x 3] map[a:1 b:2] map[a:[5 6]] [] map[]",
    ),
    (
        "missing and nil",
        "{{ .Nope }}|{{ .A }}|{{ .M.zz }}|{{ print .A }}",
        "<no value>|<no value>|<no value>|<nil>",
    ),
    ("missing chain is silent", "{{ .Nope.Deeper }}", "<no value>"),
    ("root variable", "{{ $.S }} {{ $.M.a }}", "str 1"),
    ("paren chain", '{{ (.M).a }} {{ (index .N "a") }}', "1 [5 6]"),
    # variables
    ("declare and assign", "{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),
    (
        "scoping",
        "{{ $x := 1 }}{{ if .T }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}"
        "{{ if .T }}{{ $x = 3 }}{{ end }}{{ $x }}",
        "213",
    ),
    ("with declares", "{{ with $x := .S }}{{ $x }}{{ . }}{{ end }}", "strstr"),
    ("if declares", "{{ if $x := .I }}{{ $x }}{{ end }}", "3"),
    # if / with
    ("else if chain", "{{ if .Z }}a{{ else if .ES }}b{{ else if .T }}c{{ else }}d{{ end }}", "c"),
    (
        "truthiness",
        "{{ if .E }}1{{ end }}{{ if .EM }}2{{ end }}{{ if .ES }}3{{ end }}"
        "{{ if .Z }}4{{ end }}{{ if .A }}5{{ end }}{{ if .L }}6{{ end }}",
        "6",
    ),
    ("with", "{{ with .M }}{{ .a }}{{ end }}{{ with .A }}x{{ else }}no{{ end }}", "1no"),
    ("else with", "{{ with .ES }}x{{ else with .S }}w{{ . }}{{ end }}", "wstr"),
    # range
    ("range list", "{{ range .L }}[{{ . }}]{{ end }}", "[1][x][3]"),
    ("range index", "{{ range $i, $v := .L }}{{ $i }}={{ $v }};{{ end }}", "0=1;1=x;2=3;"),
    ("range one var", "{{ range $v := .L }}{{ $v }}{{ end }}", "1x3"),
    ("range map sorted", "{{ range $k, $v := .M }}{{ $k }}={{ $v }};{{ end }}", "a=1;b=2;"),
    ("range map values", "{{ range .M }}{{ . }}{{ end }}", "12"),
    ("range int", "{{ range 3 }}{{ . }}{{ end }}", "012"),
    (
        "range else",
        "{{ range .E }}x{{ else }}e1{{ end }}{{ range .EM }}x{{ else }}e2{{ end }}"
        "{{ range .A }}x{{ else }}e3{{ end }}",
        "e1e2e3",
    ),
    ("break", '{{ range .W }}{{ if eq . "b" }}{{ break }}{{ end }}[{{ . }}]{{ end }}', "[a]"),
    (
        "continue",
        '{{ range .W }}{{ if eq . "b" }}{{ continue }}{{ end }}[{{ . }}]{{ end }}',
        "[a][c]",
    ),
    (
        "nested range with $",
        "{{ range $i, $v := .E }}{{ end }}"
        "{{ range $i, $_ := .N.a }}{{ range $.N.a }}{{ $i }}{{ . }}{{ end }}|{{ end }}",
        "0506|1516|",
    ),
    (
        "separator idiom",
        "{{ range $i, $e := .L }}{{ if $i }}, {{ end }}{{ $e }}{{ end }}",
        "1, x, 3",
    ),
    # define / template / block
    ("define and template", '{{ define "a" }}A{{ . }}{{ end }}{{ template "a" .S }}', "Astr"),
    ("block", '{{ block "b" .L }}B{{ . }}{{ end }}', "B[1 x 3]"),
    (
        "template before define",
        '{{ template "a" }}{{ define "a" }}[{{ . }}]{{ end }}',
        "[<no value>]",
    ),
    # builtins
    (
        "comparisons",
        '{{ eq .S "x" }} {{ ne 1 2 }} {{ eq 1 2 3 1 }} {{ lt 1 2 }} {{ le "a" "b" }}'
        " {{ ge 2.5 2.5 }} {{ gt 3 2 }}",
        "false true true true true true true",
    ),
    ("eq nil", "{{ eq .A nil }} {{ eq .S nil }}", "true false"),
    (
        "and or not",
        '{{ and 1 0 2 }} {{ or 0 "" }} {{ or 0 "x" }} {{ not 0 }} {{ and 1 2 }} {{ not .L }}',
        "0  x true 2 false",
    ),
    ("and short-circuits", "{{ and .Z (index .L 99) }}", "0"),
    ("len", '{{ len .L }} {{ len .M }} {{ len .S }} {{ len .E }} {{ len "héllo" }}', "3 2 3 0 6"),
    (
        "index",
        '{{ index .L 1 }} {{ index .N "a" 1 }} {{ index .M "zz" }} {{ index .L }}',
        "x 6 <no value> [1 x 3]",
    ),
    (
        "slice",
        '{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .L }} {{ slice "hello" 1 3 }}',
        "[x 3] [x] [1 x 3] el",
    ),
    (
        "pipes",
        '{{ .S | len }} {{ .L | printf "%v-%v" 1 }} {{ 1.5 | printf "%v %v" 2 }}',
        "3 1-[1 x 3] 2 1.5",
    ),
    ("print spacing", '{{ print 1 2 "a" "b" 3 nil 4.5 }}', "1 2ab3 <nil> 4.5"),
    ("println", '{{ println 1 "a" }}', "1 a\n"),
    (
        "printf verbs",
        '{{ printf "%5.1f|%-4d|%x|%q|%d%%" 3.14159 7 "hi" \'x\' 50 }}',
        "  3.1|7   |6869|'x'|50%",
    ),
    (
        "printf more verbs",
        '{{ printf "%6.2f|%-6s|%06d|%+.1e|%t|%X" 3.14159 "ab" 42 12345.6 true 255 }}',
        "  3.14|ab    |000042|+1.2e+04|true|FF",
    ),
    (
        "printf g and e",
        '{{ printf "%g %e %.3g %v" 1e6 1234.5678 1.0 123456789.0 }}',
        "1e+06 1.234568e+03 1 1.23456789e+08",
    ),
    ("printf bad verb", '{{ printf "%d %s|%d" "x" 3 nil }}', "%!d(string=x) %!s(int=3)|%!d(<nil>)"),
    (
        "printf missing/extra",
        '{{ printf "%s %s" "a" }}|{{ printf "%d" 1 2 }}',
        "a %!s(MISSING)|1%!(EXTRA int=2)",
    ),
    (
        "printf slice",
        '{{ printf "%s" .L }} {{ printf "%v %d" .M 3 }}',
        "[%!s(int=1) x %!s(int=3)] map[a:1 b:2] 3",
    ),
    (
        "escapers",
        '{{ html "<a&b>\'\\"" }} {{ js "a\'b\\"<>" }} {{ urlquery "a b&c/d" }}',
        "&lt;a&amp;b&gt;&#39;&#34; a\\'b\\\"\\u003C\\u003E a+b%26c%2Fd",
    ),
    (
        "json",
        '{{ json .M }} {{ json .L }} {{ json "<&>" }} {{ json .A }}',
        '{"a":1,"b":2} [1,"x",3] "\\u003c\\u0026\\u003e" null',
    ),
    (
        "toTypeScriptType",
        "{{ toTypeScriptType .P }} {{ toTypeScriptType .Q }} {{ toTypeScriptType .S }}",
        "any[] | null string | number any",
    ),
]


@pytest.mark.parametrize(("src", "want"), [(s, w) for _, s, w in CASES], ids=[c[0] for c in CASES])
def test_render(src: str, want: str) -> None:
    data = DATA | {
        "P": {"type": ["array", "null"]},
        "Q": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    }
    assert Template.parse(src, "t").execute(data) == want


@dataclasses.dataclass
class Point:
    X: int
    Y: int

    def Sum(self, extra: int) -> int:
        return self.X + self.Y + extra


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("{{ .X }},{{ .Y }}", "1,2"),
        ("{{ .Sum 10 }}", "13"),
        ("{{ . }}", "{1 2}"),
        ("{{ 5 | .Sum }}", "8"),
    ],
    ids=["fields", "method", "struct print", "piped method arg"],
)
def test_dataclass_data(src: str, want: str) -> None:
    assert Template.parse(src).execute(Point(1, 2)) == want


def test_dates_use_injected_clock() -> None:
    template = Template.parse("{{ currentDate }} {{ yesterdayDate }}")
    got = template.execute({}, today=lambda: datetime.date(2024, 3, 1))
    assert got == "2024-03-01 2024-02-29"


@pytest.mark.parametrize(
    ("src", "name", "want"),
    [
        ("{{ range .Messages }}{{ .Content }}{{ end }}", "Messages", True),
        ("{{ range .Messages }}{{ .Content }}{{ end }}", "messages", True),
        ("{{ .Prompt }}", "Messages", False),
        ("{{ if $.Tools }}x{{ end }}", "Tools", True),
        ('{{ define "x" }}{{ .Suffix }}{{ end }}', "Suffix", True),
        ("{{ (.A).Suffix }}", "Suffix", True),
        ("{{/* .Suffix */}}{{ .Prompt }}", "Suffix", False),
    ],
    ids=["field", "case-insensitive", "absent", "via $", "in define", "chain", "comment"],
)
def test_uses(src: str, name: str, want: bool) -> None:
    assert Template.parse(src).uses(name) is want
