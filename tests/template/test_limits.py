"""Bounds on what one template may cost: a template comes from whoever created the model
(or from a request's `template` field), so it must fail with a `TemplateError` (a 400),
never exhaust the stack, run for days or allocate without end. Cases found by the atheris
target `scripts/fuzz/fuzz_template.py` (kept in `tests/testdata/fuzz/template/`)."""

from __future__ import annotations

import pytest

from ollamapy.template import Template, TemplateExecError, TemplateSyntaxError
from ollamapy.template import exec as template_exec


def render(text: str, data: object = None) -> str:
    return Template.parse(text, "t").execute(data or {})


@pytest.mark.parametrize(
    "text",
    [
        "{{" + "(" * 300 + "1" + ")" * 300 + "}}",
        "{{if 1}}" * 300 + "x" + "{{end}}" * 300,
        "{{range .L}}" * 300 + "x" + "{{end}}" * 300,
        "{{if 0}}" + "{{else if 0}}" * 400 + "{{end}}",
    ],
    ids=["parentheses", "ifs", "ranges", "else-if-chain"],
)
def test_nesting_deeper_than_the_limit_is_a_syntax_error(text: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="max expression depth exceeded"):
        Template.parse(text, "t")


def test_nesting_within_the_limit_still_renders() -> None:
    assert render("{{with 1}}" * 99 + "x" + "{{end}}" * 99) == "x"
    assert render("{{" + "(" * 99 + "1" + ")" * 99 + "}}") == "1"


def test_templates_calling_templates_too_deeply_fail_with_an_exec_error() -> None:
    defines = "".join(
        f'{{{{define "t{i}"}}}}' + "{{if 1}}" * 95 + f'{{{{template "t{i + 1}"}}}}'
        "" + "{{end}}" * 95 + "{{end}}"
        for i in range(6)
    )
    with pytest.raises(TemplateExecError, match="maximum template depth"):
        render(defines + '{{template "t0"}}')


def test_a_range_that_would_run_for_days_stops_with_an_exec_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(template_exec, "MAX_STEPS", 10_000)
    assert render("{{range 4000}}{{end}}x") == "x"
    with pytest.raises(TemplateExecError, match="execution exceeded 10000 steps"):
        render("{{range 1000000000000}}{{end}}")


def test_output_beyond_the_limit_stops_with_an_exec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_exec, "MAX_OUTPUT", 1000)
    assert len(render("{{range 99}}0123456789{{end}}")) == 990
    with pytest.raises(TemplateExecError, match="output exceeded 1000 characters"):
        render("{{range 101}}0123456789{{end}}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{printf "%*d|" 999999999 1}}', "%!(BADWIDTH)1|"),
        ('{{printf "%*d|" -1000001 1}}', "%!(BADWIDTH)1|"),
        ('{{printf "%.*f|" 999999999 1.0}}', "%!(BADPREC)1.000000|"),
        ('{{printf "%099999999d|" 1}}', "%!(NOVERB)%!(EXTRA int=1)"),
        ('{{printf "%.99999999s|" "ab"}}', "%!(NOVERB)%!(EXTRA string=ab)"),
        ('{{printf "%*d|" 1000000 1 | len}}', "1000001"),
        ('{{printf "%5d|%-3d|" 1 2}}', "    1|2  |"),
    ],
    ids=[
        "star-width",
        "negative-star-width",
        "star-precision",
        "long-width",
        "long-precision",
        "width-at-the-limit",
        "ordinary-widths",
    ],
)
def test_printf_refuses_widths_beyond_a_million_as_go_does(text: str, expected: str) -> None:
    assert render(text) == expected
