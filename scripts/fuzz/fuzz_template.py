"""Atheris target: the Go template parser and executor (`template.Template`).

Only `TemplateError` (syntax or execution) may come out of it. See `harness.py`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from ollamapy.errors import TemplateError

MODULE = "ollamapy.template"
DATA: dict[str, Any] = {
    "System": "You are a cat.",
    "Prompt": "hello",
    "Response": "",
    "Suffix": "",
    "Think": True,
    "ThinkLevel": "",
    "IsThinkSet": False,
    "Messages": [
        {"Role": "system", "Content": "s"},
        {"Role": "user", "Content": "hi", "Images": []},
        {
            "Role": "assistant",
            "Content": "",
            "ToolCalls": [{"Function": {"Name": "f", "Arguments": {"a": 1}}}],
        },
    ],
    "Tools": [{"Type": "function", "Function": {"Name": "f", "Description": "d"}}],
}


def target(data: bytes) -> None:
    from ollamapy.template import Template

    text = data.decode("utf-8", errors="replace")
    try:
        Template.parse(text, "fuzz").execute(DATA, today=lambda: datetime.date(2026, 1, 1))
    except TemplateError:
        return


def seeds() -> Iterable[bytes]:
    yield b"{{ if .System }}{{ .System }}{{ end }}{{ range $i, $m := .Messages }}{{ $m.Role }}"
    yield b"{{- range .Tools }}{{ json . }}{{ end }}{{ slice .Prompt 1 3 }}{{ index .Messages 0 }}"
    yield b'{{ define "x" }}{{ . }}{{ end }}{{ template "x" .Prompt }}{{ with .Think }}t{{ end }}'
    yield b'{{ printf "%q %d" .Prompt (len .Messages) }}{{ if and (eq .Prompt "a") (ne 1 2) }}'
    yield b"{{ $x := 1 }}{{ range .Messages }}{{ break }}{{ end }}{{ currentDate }}{{ .Missing.A }}"


if __name__ == "__main__":
    from harness import main

    main(MODULE, target, seeds)
