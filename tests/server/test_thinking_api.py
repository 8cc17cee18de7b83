"""Thinking through the real app: `/api/chat`, `/api/generate`, `/api/show` and `/v1`.

The scripted runner writes what a Qwen 3 model writes (`<think>...</think>` then the answer);
the model carries Qwen 3's own Ollama template (tests/testdata/qwen3.gotmpl), so these check
both what reached the runner (the rendered `/think`, `/no_think`, earlier traces) and how
the trace comes back: `message.thinking` / `thinking` natively, `reasoning` on `/v1`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.conftest import TESTDATA
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted
from tests.ggufs import write_tiny_gguf
from tests.scheduler.live import create_model

QWEN3_TEMPLATE = (TESTDATA / "qwen3.gotmpl").read_text()
QWEN3 = f'TEMPLATE """{QWEN3_TEMPLATE}"""\nPARAMETER stop "<|im_end|>"\n'
TRACE = ["<th", "ink>\nCount the r", "s: three.\n</th", "ink>\n\nThere are ", "three."]
ASK: Any = [{"role": "user", "content": "How many r in strawberry?"}]
INVALID_THINK = (
    'invalid think value: "loud" (must be "high", "medium", "low", "max", true, or false)'
)


@pytest.fixture
def script() -> Script:
    return Script(chunks=list(TRACE))


@pytest.fixture
def server(tmp_path: Path, script: Script) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path, script, QWEN3)


def post(server: ScriptedServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json={"model": MODEL, **body}, timeout=30)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


def create(server: ScriptedServer, name: str, modelfile_extra: str) -> None:
    body = {"model": name, "modelfile": f"FROM {MODEL}\n{modelfile_extra}", "stream": False}
    response = httpx.post(f"{server.url}/api/create", json=body, timeout=30)
    assert response.status_code == 200, response.text


# ----------------------------------------------------------------------------- /api/chat


def test_chat_streams_the_trace_apart_from_the_answer(server: ScriptedServer) -> None:
    got = lines(post(server, "/api/chat", {"messages": ASK, "think": True}))
    thinking = [line["message"].get("thinking", "") for line in got]
    content = [line["message"]["content"] for line in got]
    assert "".join(thinking) == "Count the rs: three.\n"
    assert "".join(content) == "There are three."
    first_answer = next(i for i, text in enumerate(content) if text)
    assert all(not text for text in thinking[first_answer:]), "the trace comes first"
    assert len([text for text in thinking if text]) >= 2, "the trace streams as it comes"
    prompt = server.script.requests[0].prompt
    assert prompt.endswith("How many r in strawberry? /think<|im_end|>\n<|im_start|>assistant\n")


def test_chat_unstreamed_has_the_whole_trace(server: ScriptedServer) -> None:
    body = post(server, "/api/chat", {"messages": ASK, "think": True, "stream": False}).json()
    assert body["message"] == {
        "role": "assistant",
        "content": "There are three.",
        "thinking": "Count the rs: three.\n",
    }


def test_think_unset_on_a_thinking_model_thinks(server: ScriptedServer) -> None:
    """Ollama's default: a capable model thinks unless told not to."""
    body = post(server, "/api/chat", {"messages": ASK, "stream": False}).json()
    assert body["message"]["thinking"] == "Count the rs: three.\n"
    assert "/think<|im_end|>" in server.script.requests[0].prompt


def test_think_false_renders_no_think_and_separates_nothing(server: ScriptedServer) -> None:
    """With `think: false` the template closes an empty trace for the model; anything it
    writes anyway is content, as Ollama passes it through."""
    body = post(server, "/api/chat", {"messages": ASK, "think": False, "stream": False}).json()
    assert "thinking" not in body["message"]
    assert body["message"]["content"] == "".join(TRACE)
    prompt = server.script.requests[0].prompt
    assert prompt.endswith("/no_think<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


@pytest.mark.parametrize("level", ["low", "medium", "high", "max"])
def test_levels_turn_thinking_on(server: ScriptedServer, level: str) -> None:
    body = post(server, "/api/chat", {"messages": ASK, "think": level, "stream": False}).json()
    assert body["message"]["thinking"] == "Count the rs: three.\n"
    assert "/think<|im_end|>" in server.script.requests[0].prompt


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_an_unknown_level_is_a_400(server: ScriptedServer, path: str) -> None:
    response = post(server, path, {"messages": ASK, "prompt": "hi", "think": "loud"})
    assert response.status_code == 400
    assert response.json() == {"error": INVALID_THINK}
    assert not server.script.requests


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_think_on_a_model_without_thinking_is_a_400(server: ScriptedServer, path: str) -> None:
    create(server, "plain", 'TEMPLATE """{{ range .Messages }}{{ .Content }}{{ end }}"""')
    for think in (True, "high"):
        body = {"model": "plain", "messages": ASK, "prompt": "hi", "think": think}
        response = httpx.post(f"{server.url}{path}", json=body, timeout=30)
        assert response.status_code == 400
        assert response.json() == {"error": '"plain" does not support thinking'}
    body = {"model": "plain", "messages": ASK, "prompt": "hi", "think": False, "stream": False}
    assert httpx.post(f"{server.url}{path}", json=body, timeout=30).status_code == 200


def test_an_earlier_trace_renders_through_the_template(server: ScriptedServer) -> None:
    """Qwen 3's template shows the trace of assistant turns after the last user message."""
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": "",
            "thinking": "I should count with the tool.",
            "tool_calls": [{"function": {"name": "count", "arguments": {"letter": "r"}}}],
        },
        {"role": "tool", "content": "3", "tool_name": "count"},
    ]
    post(server, "/api/chat", {"messages": messages, "stream": False})
    prompt = server.script.requests[0].prompt
    assert "<|im_start|>assistant\n<think>I should count with the tool.</think>\n" in prompt


def test_thinking_then_a_tool_call(server: ScriptedServer) -> None:
    """The trace is split off first; tool calls are parsed from the answer only."""
    server.script.chunks = [
        "<think>Use the tool.</think>\n",
        '<tool_call>\n{"name": "count", "arguments": {"letter": "r"}}\n</tool_call>',
    ]
    tool = {"type": "function", "function": {"name": "count", "parameters": {"type": "object"}}}
    body = {"messages": ASK, "tools": [tool], "stream": False}
    message = post(server, "/api/chat", body).json()["message"]
    assert message["thinking"] == "Use the tool."
    assert message["content"] == ""
    assert message["tool_calls"][0]["function"] == {
        "index": 0,
        "name": "count",
        "arguments": {"letter": "r"},
    }


def test_a_trace_that_never_closes_is_all_thinking(server: ScriptedServer) -> None:
    server.script.chunks = ["<think>Hmm, let me", " think about </thi"]
    message = post(server, "/api/chat", {"messages": ASK, "stream": False}).json()["message"]
    assert message == {
        "role": "assistant",
        "content": "",
        "thinking": "Hmm, let me think about </thi",
    }


# ----------------------------------------------------------------------------- /api/generate

OPENS_TRACE = (
    'TEMPLATE """{{ .ThinkLevel }}|{{- range $i, $_ := .Messages }}'
    '{{- if eq .Role "assistant" }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}'
    "{{ .Content }}"
    '{{- else }}<|user|>{{ .Content }}{{ end }}{{ end }}<|assistant|><think>\n"""'
)


def test_generate_streams_thinking(server: ScriptedServer) -> None:
    got = lines(post(server, "/api/generate", {"prompt": "strawberry?", "think": True}))
    assert "".join(line.get("thinking", "") for line in got) == "Count the rs: three.\n"
    assert "".join(line["response"] for line in got) == "There are three."
    assert "thinking" not in got[-1] and got[-1]["done"]


def test_generate_unstreamed_puts_thinking_after_response(server: ScriptedServer) -> None:
    body = post(server, "/api/generate", {"prompt": "strawberry?", "stream": False}).json()
    keys = list(body)
    assert keys.index("thinking") == keys.index("response") + 1
    assert (body["response"], body["thinking"]) == ("There are three.", "Count the rs: three.\n")


def test_a_trace_the_template_opened(server: ScriptedServer) -> None:
    """A template that ends the prompt with `<think>`: the output starts inside the trace."""
    create(server, "opener", OPENS_TRACE)
    server.script.chunks = ["Three, I think.\n</think>", "\n\nThree."]
    body = {"model": "opener", "prompt": "r?", "think": "max", "stream": False}
    got = httpx.post(f"{server.url}/api/generate", json=body, timeout=30).json()
    assert (got["thinking"], got["response"]) == ("Three, I think.\n", "Three.")
    assert server.script.requests[0].prompt == "max|<|user|>r?<|assistant|><think>\n"


def test_true_reaches_the_template_as_level_medium(server: ScriptedServer) -> None:
    create(server, "opener", OPENS_TRACE)
    body = {"model": "opener", "prompt": "r?", "think": True, "stream": False}
    assert httpx.post(f"{server.url}/api/generate", json=body, timeout=30).status_code == 200
    assert server.script.requests[0].prompt.startswith("medium|")


# ----------------------------------------------------------------------------- /api/show


def test_show_lists_thinking_for_a_template_with_tags(server: ScriptedServer) -> None:
    create(server, "plain", 'TEMPLATE """{{ if .Think }}/think{{ end }}{{ .Prompt }}"""')
    caps = {}
    for name in (MODEL, "plain"):
        response = httpx.post(f"{server.url}/api/show", json={"model": name}, timeout=30)
        caps[name] = response.json()["capabilities"]
    assert "thinking" in caps[MODEL] and "tools" in caps[MODEL]
    assert "thinking" not in caps["plain"], "`.Think` alone has no tags to split by"


# ----------------------------------------------------------------------------- /v1


def openai_client(server: ScriptedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0)


def test_v1_reasoning_on_the_message(server: ScriptedServer) -> None:
    completion = openai_client(server).chat.completions.create(model=MODEL, messages=ASK)
    message = completion.choices[0].message
    assert message.content == "There are three."
    assert message.model_extra == {"reasoning": "Count the rs: three.\n"}


def test_v1_reasoning_on_the_deltas(server: ScriptedServer) -> None:
    server.script.chunks = ["<think>Count the rs: ", "three.\n</think>\n\nThere are", " three."]
    stream = openai_client(server).chat.completions.create(model=MODEL, messages=ASK, stream=True)
    deltas = [chunk.choices[0].delta for chunk in stream]
    reasoning = "".join((d.model_extra or {}).get("reasoning", "") for d in deltas)
    assert reasoning == "Count the rs: three.\n"
    assert "".join(d.content or "" for d in deltas) == "There are three."
    for delta in deltas:
        assert not (delta.content and (delta.model_extra or {}).get("reasoning")), (
            "as Ollama, a chunk carries reasoning or content, not both"
        )


@pytest.mark.parametrize(
    ("effort", "rendered"),
    [("none", "/no_think"), ("low", "/think"), ("minimal", "/think"), ("xhigh", "/think")],
)
def test_v1_reasoning_effort_maps_to_think(
    server: ScriptedServer, effort: Any, rendered: str
) -> None:
    openai_client(server).chat.completions.create(
        model=MODEL, messages=ASK, reasoning_effort=effort
    )
    assert f"strawberry? {rendered}<|im_end|>" in server.script.requests[0].prompt


def test_v1_reasoning_object_maps_to_think(server: ScriptedServer) -> None:
    body = {"model": MODEL, "messages": ASK, "reasoning": {"effort": "none"}}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "".join(TRACE)
    assert "/no_think" in server.script.requests[0].prompt


# ----------------------------------------------------------------------------- the ollama client


def test_official_client_think_true(server: ScriptedServer) -> None:
    client = ollama.Client(host=server.url)
    response = client.chat(model=MODEL, messages=ASK, think=True)
    assert response.message.thinking == "Count the rs: three.\n"
    assert response.message.content == "There are three."
    streamed = list(client.chat(model=MODEL, messages=ASK, think="high", stream=True))
    assert "".join(c.message.thinking or "" for c in streamed) == "Count the rs: three.\n"
    assert "".join(c.message.content or "" for c in streamed) == "There are three."
    generated = client.generate(model=MODEL, prompt="strawberry?", think=True)
    assert (generated.thinking, generated.response) == (
        "Count the rs: three.\n",
        "There are three.",
    )


def test_deepseek_r1_history_loses_its_old_traces(server: ScriptedServer) -> None:
    """As Ollama does for Qwen 3 and DeepSeek R1: a trace a client sent back inside an
    earlier answer's content is cut before rendering."""
    create(server, "deepseek-r1", QWEN3)
    messages = [
        *ASK,
        {"role": "assistant", "content": "<think>Count.</think>\n\nThree."},
        {"role": "user", "content": "And in raspberry?"},
    ]
    body = {"model": "deepseek-r1", "messages": messages, "stream": False}
    assert httpx.post(f"{server.url}/api/chat", json=body, timeout=30).status_code == 200
    prompt = server.script.requests[0].prompt
    assert "<|im_start|>assistant\nThree.<|im_end|>" in prompt
    assert "Count." not in prompt


# ----------------------------------------------------------------------------- gpt-oss (harmony)

HARMONY = (
    'TEMPLATE """<|start|>system<|message|>Reasoning: {{ .ThinkLevel }}<|end|>'
    "{{- if .Tools }}<|start|>developer<|message|>"
    "{{ range .Tools }}{{ .Function.Name }} {{ end }}<|end|>{{ end }}"
    "{{- range .Messages }}<|start|>{{ .Role }}<|message|>{{ .Content }}<|end|>{{ end }}"
    '<|start|>assistant"""'
)


@pytest.fixture
def gpt_oss(server: ScriptedServer, tmp_path: Path) -> str:
    """A gpt-oss model (its GGUF says so) with a harmony template."""
    path = write_tiny_gguf(tmp_path / "gptoss.gguf", arch="gptoss")
    create_model(server.url, "gpt-oss", path, HARMONY)
    return "gpt-oss"


def test_gpt_oss_channels_become_thinking_and_content(server: ScriptedServer, gpt_oss: str) -> None:
    server.script.chunks = [
        "<|channel|>analysis<|message|>Two plus",
        " two.<|end|><|start|>assistant<|channel|>final<|message|>",
        "Four.",
    ]
    body = {"model": gpt_oss, "messages": ASK, "think": "max"}
    got = lines(httpx.post(f"{server.url}/api/chat", json=body, timeout=30))
    assert "".join(line["message"].get("thinking", "") for line in got) == "Two plus two."
    assert "".join(line["message"]["content"] for line in got) == "Four."
    assert "Reasoning: high<|end|>" in server.script.requests[0].prompt, "max reads as high"


def test_gpt_oss_calls_a_tool_from_its_commentary_channel(
    server: ScriptedServer, gpt_oss: str
) -> None:
    server.script.chunks = [
        "<|channel|>analysis<|message|>Need the tool.<|end|><|start|>assistant",
        "<|channel|>commentary to=functions.count <|constrain|>json<|message|>",
        '{"letter": "r"}',
    ]
    tool = {"type": "function", "function": {"name": "count", "parameters": {"type": "object"}}}
    body = {"model": gpt_oss, "messages": ASK, "tools": [tool], "stream": False}
    message = httpx.post(f"{server.url}/api/chat", json=body, timeout=30).json()["message"]
    assert message["thinking"] == "Need the tool."
    assert message["content"] == ""
    assert message["tool_calls"][0]["function"] == {
        "index": 0,
        "name": "count",
        "arguments": {"letter": "r"},
    }
    shown = httpx.post(f"{server.url}/api/show", json={"model": gpt_oss}, timeout=30).json()
    assert "thinking" in shown["capabilities"]
