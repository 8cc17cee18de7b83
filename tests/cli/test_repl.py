"""The REPL's slash commands, multi-line input and chat turns, driven by a scripted reader."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from ollamapy.cli.repl import (
    SET_COMMANDS,
    SHOW_COMMANDS,
    SLASH_COMMANDS,
    USAGE_SET,
    USAGE_SHOW,
    Interrupted,
    Outcome,
    Repl,
    parse_command,
    save_request,
)
from ollamapy.cli.run import RunOptions, Session
from tests.cli.cli_fakes import FakeOllama, ndjson, terminal


class ScriptedReader:
    """Hands out lines; an `Interrupted` item is raised (Ctrl+C); the end is Ctrl+D."""

    def __init__(self, lines: Iterable[str | Interrupted]) -> None:
        self.lines = list(lines)
        self.alts: list[bool] = []
        self.history: list[bool] = []

    def read(self, alt: bool) -> str:
        self.alts.append(alt)
        if not self.lines:
            raise EOFError
        item = self.lines.pop(0)
        if isinstance(item, Interrupted):
            raise item
        return item

    def set_history(self, enabled: bool) -> None:
        self.history.append(enabled)


SHOW = {
    "license": "MIT",
    "modelfile": "FROM m\n",
    "parameters": "temperature 0.2",
    "template": "{{ .Prompt }}",
    "system": "",
    "details": {"family": "llama", "parameter_size": "135M", "quantization_level": "Q4_1"},
    "capabilities": ["completion"],
}


def make_repl(fake: FakeOllama, lines: Iterable[str | Interrupted] = ()) -> Repl:
    fake.routes.setdefault(("POST", "/api/show"), httpx.Response(200, json=SHOW))
    fake.routes.setdefault(
        ("POST", "/api/chat"),
        ndjson(
            {"message": {"role": "assistant", "content": "Hi"}},
            {"message": {"role": "assistant", "content": "!"}, "done": True, "eval_count": 2},
        ),
    )
    session = Session(fake.client(), terminal())
    return Repl(session, RunOptions(model="m"), ScriptedReader(lines))


def out(repl: Repl) -> str:
    stream = repl.session.term.out
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def err(repl: Repl) -> str:
    stream = repl.session.term.err
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/set parameter", ("", "/set parameter seed <int>")),
        ("/set parameter temperature 0.5", ("Set parameter 'temperature' to '0.5'\n", "")),
        ("/set parameter stop a b", ("Set parameter 'stop' to 'a, b'\n", "")),
        ("/set parameter nope 1", ("Couldn't set parameter: \"unknown parameter 'nope'\"\n", "")),
        ("/set system You are a cat.", ("Set system message.\n", "")),
        ("/set template {{ .Prompt }}", ("Set prompt template.\n", "")),
        ("/set history", ("", "")),
        ("/set nohistory", ("", "")),
        ("/set wordwrap", ("Set 'wordwrap' mode.\n", "")),
        ("/set nowordwrap", ("Set 'nowordwrap' mode.\n", "")),
        ("/set format json", ("Set format to 'json' mode.\n", "")),
        (
            "/set format xml",
            ("Invalid or missing format. For 'json' mode use '/set format json'\n", ""),
        ),
        ("/set noformat", ("Disabled format.\n", "")),
        ("/set verbose", ("Set 'verbose' mode.\n", "")),
        ("/set quiet", ("Set 'quiet' mode.\n", "")),
        ("/set think", ("Set 'think' mode.\n", "")),
        ("/set nothink", ("Set 'nothink' mode.\n", "")),
        ("/set", ("", USAGE_SET)),
        ("/set bogus", ("Unknown command '/set bogus'. Type /? for help\n", "")),
        ("/show", ("", USAGE_SHOW)),
        ("/show info", ("", "  Model\n    architecture    llama")),
        ("/show license", ("MIT\n", "")),
        ("/show modelfile", ("FROM m\n\n", "")),
        ("/show parameters", ("Model defined parameters:\n  temperature 0.2\n\n", "")),
        ("/show system", ("No system message was specified for this model.\n", "")),
        ("/show template", ("{{ .Prompt }}\n", "")),
        ("/show bogus", ("Unknown command '/show bogus'. Type /? for help\n", "")),
        ("/clear", ("Cleared session context\n", "")),
        ("/load", ("Usage:\n  /load <modelname>\n", "")),
        ("/save", ("Usage:\n  /save <modelname>\n", "")),
        ("/?", ("", "Available Commands:\n  /set            Set session variables\n")),
        ("/help", ("", 'Use """ to begin a multi-line message.\n')),
        ("/? shortcuts", ("", "  Ctrl + d            Exit ollama (/bye)\n")),
        ("/help set", ("", USAGE_SET)),
        ("/? show", ("", USAGE_SHOW)),
        ("/x", ("Unknown command '/x'. Type /? for help\n", "")),
        ("/bye now", ("", "")),
    ],
)
def test_slash_commands(fake: FakeOllama, line: str, expected: tuple[str, str]) -> None:
    repl = make_repl(fake)
    repl.handle(line)
    assert out(repl) == expected[0]
    assert expected[1] in err(repl)
    assert not fake.bodies("POST", "/api/chat")


def test_every_table_entry_is_covered() -> None:
    assert set(SLASH_COMMANDS) == {
        "/set",
        "/show",
        "/load",
        "/save",
        "/clear",
        "/list",
        "/bye",
        "/exit",
        "/?",
        "/help",
    }
    assert set(SET_COMMANDS) >= {
        "parameter",
        "system",
        "template",
        "history",
        "nohistory",
        "wordwrap",
        "nowordwrap",
        "format",
        "noformat",
        "verbose",
        "quiet",
    }
    assert set(SHOW_COMMANDS) == {
        "info",
        "license",
        "modelfile",
        "parameters",
        "system",
        "template",
    }


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("/set parameter top_k 10", ("/set", ["parameter", "top_k", "10"])),
        ("/bye", ("/bye", [])),
        ("  /show   info ", ("/show", ["info"])),
    ],
)
def test_parse_command(line: str, parsed: tuple[str, list[str]]) -> None:
    assert parse_command(line) == parsed


@pytest.mark.parametrize("line", ["/bye", "/exit"])
def test_bye_exits(fake: FakeOllama, line: str) -> None:
    assert make_repl(fake).handle(line) is Outcome.EXIT


def test_set_effects_on_the_session(fake: FakeOllama) -> None:
    repl = make_repl(fake)
    for line in (
        "/set parameter temperature 0.5",
        "/set parameter stop a b",
        "/set format json",
        "/set verbose",
        "/set nowordwrap",
        "/set system Be brief.",
        "/set system Be briefer.",
        "/set nohistory",
    ):
        repl.handle(line)
    opts = repl.opts
    assert opts.options == {"temperature": 0.5, "stop": ["a", "b"]}
    assert (opts.format, opts.verbose, opts.word_wrap) == ("json", True, False)
    assert opts.messages == [{"role": "system", "content": "Be briefer."}]
    assert isinstance(repl.reader, ScriptedReader)
    assert repl.reader.history == [False]


def test_chat_keeps_history_across_turns(fake: FakeOllama) -> None:
    repl = make_repl(fake, ["hello", "/set parameter seed 1", "again"])
    repl.run()
    bodies = fake.bodies("POST", "/api/chat")
    assert bodies[0]["messages"] == [{"role": "user", "content": "hello"}]
    assert bodies[1]["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "again"},
    ]
    assert bodies[1]["options"] == {"seed": 1}
    assert out(repl) == "Hi!\n\nSet parameter 'seed' to '1'\nHi!\n\n\n"


def test_multiline_prompt_and_system(fake: FakeOllama) -> None:
    repl = make_repl(
        fake, ['"""first', "second", 'third"""', '/set system """You', 'are a cat."""', '"""one"""']
    )
    repl.run()
    bodies = fake.bodies("POST", "/api/chat")
    assert bodies[0]["messages"][0] == {"role": "user", "content": "first\nsecond\nthird"}
    assert repl.opts.system == "You\nare a cat."
    assert bodies[1]["messages"][-1] == {"role": "user", "content": "one"}
    assert isinstance(repl.reader, ScriptedReader)
    assert repl.reader.alts[:4] == [False, True, True, False]


def test_ctrl_c_at_prompt_and_ctrl_d(fake: FakeOllama) -> None:
    repl = make_repl(fake, [Interrupted(""), Interrupted("typed")])
    repl.run()
    assert out(repl) == "\nUse Ctrl + d or /bye to exit.\n\n"


def test_clear_keeps_system_message(fake: FakeOllama) -> None:
    repl = make_repl(fake, ["/set system Be brief.", "hi", "/clear"])
    repl.run()
    assert repl.opts.messages == [{"role": "system", "content": "Be brief."}]


def test_save_creates_model_from_session(fake: FakeOllama) -> None:
    fake.routes[("POST", "/api/create")] = httpx.Response(200, json={"status": "success"})
    repl = make_repl(fake, ["/set system Be brief.", "/set parameter top_k 5", "hi", "/save mine"])
    repl.run()
    assert fake.bodies("POST", "/api/create") == [
        {
            "model": "mine",
            "from": "m",
            "system": "Be brief.",
            "parameters": {"top_k": 5},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hi!"},
            ],
            "stream": False,
        }
    ]
    assert "Created new model 'mine'\n" in out(repl)


def test_save_invalid_name(fake: FakeOllama) -> None:
    fake.routes[("POST", "/api/create")] = httpx.Response(400, json={"error": "invalid model name"})
    repl = make_repl(fake, ["/save bad:name:x"])
    repl.run()
    assert "error: The model name 'bad:name:x' is invalid\n" in out(repl)


def test_save_request_prefers_parent_model() -> None:
    opts = RunOptions(model="child", parent_model="parent:latest")
    assert save_request("x", opts).to_body() == {"model": "x", "from": "parent:latest"}


def test_load_switches_model_or_restores(fake: FakeOllama) -> None:
    answers: dict[str, Any] = {
        "good": ndjson({"done": True}),
        "bad": httpx.Response(404, json={"error": "model 'bad' not found"}),
    }
    fake.routes[("POST", "/api/generate")] = lambda body: answers[body["model"]]
    repl = make_repl(fake, ["hi", "/load bad", "/load good"])
    repl.run()
    assert "Loading model 'bad'\nCouldn't find model 'bad'\nLoading model 'good'\n" in out(repl)
    assert repl.opts.model == "good"
    assert repl.opts.messages == []


def test_list_inside_the_repl(fake: FakeOllama) -> None:
    fake.routes[("GET", "/api/tags")] = httpx.Response(200, json={"models": []})
    repl = make_repl(fake, ["/list"])
    repl.run()
    assert out(repl).startswith("NAME    ID    SIZE    MODIFIED \n")


def test_verbose_prints_stats(fake: FakeOllama) -> None:
    repl = make_repl(fake, ["/set verbose", "hi"])
    repl.run()
    assert err(repl) == "eval count:           2 token(s)\n"


def test_prompt_reader_history_file(tmp_path: Any) -> None:
    from ollamapy.cli.prompt_reader import SwitchableHistory

    history = SwitchableHistory(tmp_path / "h" / "history", enabled=False)
    history.store_string("secret")
    history.enabled = True
    history.store_string("kept")
    assert "kept" in (tmp_path / "h" / "history").read_text()
    assert "secret" not in (tmp_path / "h" / "history").read_text()


@pytest.mark.parametrize(
    ("line", "said", "think"),
    [
        ("/set think", "Set 'think' mode.\n", True),
        ("/set think max", "Set 'think' mode to 'max'.\n", "max"),
        ("/set think low", "Set 'think' mode to 'low'.\n", "low"),
        ("/set nothink", "Set 'nothink' mode.\n", False),
    ],
)
def test_set_think_reaches_the_next_turn(
    fake: FakeOllama, line: str, said: str, think: bool | str
) -> None:
    fake.routes[("POST", "/api/show")] = httpx.Response(
        200, json={**SHOW, "capabilities": ["completion", "thinking"]}
    )
    repl = make_repl(fake, [line, "hello"])
    repl.run()
    assert out(repl).startswith(said)
    assert fake.bodies("POST", "/api/chat")[0]["think"] == think
    assert "warning" not in err(repl)


def test_set_think_warns_when_the_model_cannot_think(fake: FakeOllama) -> None:
    """As Ollama's ensureThinkingSupport: the setting is kept, with a warning on stderr."""
    repl = make_repl(fake)
    repl.handle("/set think")
    assert err(repl) == 'warning: model "m" does not support thinking output\n'
    assert repl.opts.think is True


def test_a_level_the_server_refuses_is_reported(fake: FakeOllama) -> None:
    """The level is checked by the server (as Ollama's REPL leaves it), its 400 printed."""
    error = 'invalid think value: "loud" (must be "high", "medium", "low", "max", true, or false)'
    fake.routes[("POST", "/api/chat")] = httpx.Response(400, json={"error": error})
    repl = make_repl(fake, ["/set think loud", "hello"])
    repl.run()
    assert fake.bodies("POST", "/api/chat")[0]["think"] == "loud"
    assert out(repl) == f"Set 'think' mode to 'loud'.\nerror: {error}\n\n"
