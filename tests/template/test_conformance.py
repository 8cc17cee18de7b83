"""Every named template in tests/testdata/conformance renders Ollama's expected text exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.chat.messages import Message
from ollamapy.chat.render import render
from ollamapy.template import Template
from tests.conftest import CONFORMANCE

TRAILING_SPACE_DROPPED = {"chatqa", "llama2-chat", "mistral-instruct", "openchat", "vicuna"}

USER = Message("user", "Hello, how are you?")
ASSISTANT = Message("assistant", "I'm doing great. How can I help you today?")
USER2 = Message("user", "I'd like to show off how chat templating works!")
SYSTEM = Message("system", "You are a helpful assistant.")
CASES = {
    "user": [USER],
    "user-assistant-user": [USER, ASSISTANT, USER2],
    "system-user-assistant-user": [SYSTEM, USER, ASSISTANT, USER2],
}


def _template_files() -> list[Path]:
    files = sorted(CONFORMANCE.glob("*.gotmpl"))
    if not files:
        raise FileNotFoundError(f"no conformance templates under {CONFORMANCE}")
    return files


def _expected_cases() -> list[tuple[str, str]]:
    return [
        (path.stem, case)
        for path in _template_files()
        for case in CASES
        if (CONFORMANCE / "expected" / path.stem / case).exists()
    ]


def test_conformance_data_present() -> None:
    assert len(_expected_cases()) >= 30


@pytest.mark.parametrize(("name", "case"), _expected_cases(), ids=lambda v: str(v))
def test_renders_expected(name: str, case: str) -> None:
    template = Template.parse((CONFORMANCE / f"{name}.gotmpl").read_text(), name)
    got = render(template, CASES[case])
    if name in TRAILING_SPACE_DROPPED and got.endswith(" "):
        got = got[:-1]
    assert got == (CONFORMANCE / "expected" / name / case).read_text()


@pytest.mark.parametrize("path", _template_files(), ids=lambda p: p.stem)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_template_renders(path: Path, case: str) -> None:
    template = Template.parse(path.read_text(), path.stem)
    got = render(template, CASES[case])
    assert CASES[case][-1].content in got
    assert "<no value>" not in got


COMMAND_R_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "required": ["city"],
                "properties": {"city": {"type": "string", "description": "City name"}},
            },
        },
    }
]


def test_command_r_renders_tools() -> None:
    template = Template.parse((CONFORMANCE / "command-r.gotmpl").read_text(), "command-r")
    got = render(template, [USER], tools=COMMAND_R_TOOLS)
    assert "def get_weather(city: string, ) -> List[Dict]:" in got
    assert "city (string): City name" in got
