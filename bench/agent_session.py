"""Time to first token through `/v1/messages` on turn N of a coding agent's session.

    python -m bench agent-session [--turns 5] [--repeat 5] [--model smollm2]
                                  [--system-tokens 3000] [--num-ctx 8192] [--json out.json]

An agent (Claude Code and the like) sends the same long system prompt and the same tool
definitions on every turn, and the conversation grows by one tool call and its result per
turn. Each turn here is one streamed `/v1/messages` request: a ~3,000-token system prompt
(two blocks with `cache_control`, as agents send them), 20 tool definitions, and the
session so far; turn N+1 adds the assistant's `tool_use` and the user's `tool_result`
(a file listing of ~150 tokens). TTFT is measured on the client, from sending the
(pre-encoded) body to the first SSE event (`message_start`, which the server sends with
the model's first output). The figures:

- TTFT of turn 1 (the system prompt and tools evaluated cold) and of turns 2..N, whose
  prefix the KV cache holds: the issue's goal is turn 5 at most 0.1x turn 1;
- the same overhead with no model at all (`scripted_overhead`: the real app in-process
  with the test suite's scripted runner), which a loaded machine cannot drown in noise;
- the server's overhead over native `/api/chat` for the same request: the turn-N body
  and its native translation (`ollamapy.anthropic.to_chat_request`, so both evaluate the
  same prompt), sent alternately `--repeat` times on a warm cache (each evaluates one
  token); the difference of the median TTFTs (goal: under 2 ms), with the translation's
  own in-process cost beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.servers import start_ours
from bench.stats import summarize

GOAL_RATIO = 0.1
GOAL_OVERHEAD_MS = 2.0
MODEL = "agent"
TIMEOUT = httpx.Timeout(1800.0)  # turn 1 on a loaded 2-core machine: many minutes

# ----------------------------------------------------------------------------- the session

_GUIDANCE = (
    "Read the relevant files before you change them, and keep each change small.",
    "Prefer the project's existing helpers over new ones; match its naming and style.",
    "Run the tests that cover the code you touched, and report what you ran.",
    "Never print secrets, and never commit credentials or generated files.",
    "When a command fails, read its output and fix the cause rather than retrying blindly.",
    "Use the search tools to find code by name before reading whole directories.",
    "Explain what you changed and why in a few sentences when you finish.",
    "Ask the user before deleting files or rewriting history.",
    "Keep answers short: the user reads them in a terminal.",
    "When several independent look-ups are needed, call the tools for them together.",
)


def system_blocks(tokens: int) -> list[dict[str, Any]]:
    """The system prompt as agents send it: a short identity block and a long one of
    numbered guidance (about `tokens` tokens in all, at ~4 characters per token)."""
    lines: list[str] = []
    n = 0
    while sum(len(line) + 1 for line in lines) < tokens * 4:
        lines.append(f"{n + 1}. {_GUIDANCE[n % len(_GUIDANCE)]} (rule {n + 1})")
        n += 1
    return [
        {"type": "text", "text": "You are a coding agent working in the user's repository."},
        {"type": "text", "text": "\n".join(lines), "cache_control": {"type": "ephemeral"}},
    ]


def _tool(name: str, description: str, /, **properties: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": {key: {"type": kind} for key, kind in properties.items()},
            "required": list(properties)[:1],
        },
    }


TOOLS: list[dict[str, Any]] = [
    _tool("Bash", "Run a shell command.", command="string", timeout="integer"),
    _tool("Read", "Read a file.", file_path="string", offset="integer", limit="integer"),
    _tool("Write", "Write a file.", file_path="string", content="string"),
    _tool("Edit", "Replace text in a file.", file_path="string", old="string", new="string"),
    _tool("MultiEdit", "Several edits to one file.", file_path="string", edits="array"),
    _tool("Glob", "Find files by pattern.", pattern="string", path="string"),
    _tool("Grep", "Search file contents.", pattern="string", path="string", glob="string"),
    _tool("LS", "List a directory.", path="string"),
    _tool("WebFetch", "Fetch a web page.", url="string", prompt="string"),
    _tool("WebSearch", "Search the web.", query="string"),
    _tool("TodoWrite", "Update the task list.", todos="array"),
    _tool("Task", "Start a sub-agent.", description="string", prompt="string"),
    _tool("NotebookRead", "Read a notebook.", notebook_path="string"),
    _tool("NotebookEdit", "Edit a notebook cell.", notebook_path="string", source="string"),
    _tool("ExitPlanMode", "Leave plan mode.", plan="string"),
    _tool("BashOutput", "Output of a background shell.", shell_id="string"),
    _tool("KillShell", "Stop a background shell.", shell_id="string"),
    _tool("SlashCommand", "Run a slash command.", command="string"),
    _tool("AskUser", "Ask the user a question.", question="string"),
    _tool("Skill", "Use a skill.", name="string"),
]


def tool_result_text(turn: int) -> str:
    """A directory listing of about 150 tokens, different on every turn."""
    return "\n".join(f"src/module_{turn}_{i}.py  {100 + 37 * i} bytes" for i in range(20))


def session(turns: int, system: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `/v1/messages` body of each turn, 1..`turns`."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "List the source files."}]}
    ]
    bodies = []
    for turn in range(1, turns + 1):
        bodies.append(_body(system, list(messages)))
        call_id = f"toolu_{turn:04d}"
        use = {"type": "tool_use", "id": call_id, "name": "LS", "input": {"path": f"src/{turn}"}}
        result = {"type": "tool_result", "tool_use_id": call_id, "content": tool_result_text(turn)}
        messages.append({"role": "assistant", "content": [use]})
        messages.append({"role": "user", "content": [result]})
    return bodies


def _body(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1,
        "system": system,
        "tools": TOOLS,
        "messages": messages,
        "stream": True,
        "temperature": 0.0,
    }


def native_body(body: dict[str, Any]) -> dict[str, Any]:
    """The same request as a native `/api/chat` body (the server's own translation)."""
    from ollamapy.anthropic import MessagesRequest, to_chat_request

    return to_chat_request(MessagesRequest.model_validate(body)).to_body()


def translate_ms(body: dict[str, Any], rounds: int = 50) -> float:
    """The translation's in-process cost: validate + translate the body (median, ms)."""
    from ollamapy.anthropic import MessagesRequest, to_chat_request

    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        to_chat_request(MessagesRequest.model_validate(body))
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


# ----------------------------------------------------------------------------- measuring


def ttft(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    """Seconds from sending `body` to the stream's first event, read to its end."""
    data = json.dumps(body).encode()
    first = None
    t0 = time.perf_counter()
    with client.stream(
        "POST", url, content=data, headers={"content-type": "application/json"}
    ) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_bytes():
            if first is None and chunk:
                first = time.perf_counter() - t0
            if b'"error"' in chunk:
                raise RuntimeError(f"{url}: {chunk.decode(errors='replace')}")
    if first is None:
        raise RuntimeError(f"{url}: empty response")
    return first


def measure(base: str, turns: int, repeat: int, system_tokens: int) -> dict[str, Any]:
    client = httpx.Client(timeout=TIMEOUT)
    system = system_blocks(system_tokens)
    bodies = session(turns, system)
    messages_url, chat_url = base + "/v1/messages", base + "/api/chat"
    counted = client.post(
        base + "/v1/messages/count_tokens",
        json={k: bodies[0][k] for k in ("model", "system", "tools", "messages")},
    ).json()["input_tokens"]
    per_turn = [ttft(client, messages_url, body) for body in bodies]
    last = bodies[-1]
    native = {**native_body(last), "stream": True}
    ours, theirs = [], []
    ttft(client, chat_url, native)  # the same prompt: both now find it cached
    for _ in range(repeat):
        ours.append(ttft(client, messages_url, last))
        theirs.append(ttft(client, chat_url, native))
    client.close()
    overhead_ms = (statistics.median(ours) - statistics.median(theirs)) * 1000
    return {
        "turn_1_prompt_tokens": counted,
        "ttft_s": per_turn,
        "turn_n_over_turn_1": per_turn[-1] / per_turn[0],
        "messages_warm_ttft_s": summarize(ours),
        "native_warm_ttft_s": summarize(theirs),
        "overhead_ms": overhead_ms,
        "translate_ms": translate_ms(last),
    }


def scripted_overhead(turns: int, system_tokens: int, pairs: int) -> dict[str, Any]:
    """The overhead with no model time at all: the real app in this process with the test
    suite's scripted runner (`tests.fakes`, which answers at once), so both TTFTs are the
    server's own work (parsing, translating, rendering, encoding) and their difference is
    the translation's cost; `pairs` interleaved requests of each, medians compared."""
    from tests.fakes import MODEL as SCRIPTED
    from tests.fakes import TOOLS_TEMPLATE, Script, serve_scripted

    last = {**session(turns, system_blocks(system_tokens))[-1], "model": SCRIPTED}
    native = {**native_body(last), "stream": True}
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-agent-scripted-") as tmp:
        for server in serve_scripted(Path(tmp), Script(chunks=["ok"]), TOOLS_TEMPLATE):
            client = httpx.Client(timeout=TIMEOUT)
            ours, theirs = [], []
            for _ in range(pairs):
                ours.append(ttft(client, server.url + "/v1/messages", last))
                theirs.append(ttft(client, server.url + "/api/chat", native))
            client.close()
    return {
        "scripted_messages_ttft_s": summarize(ours),
        "scripted_native_ttft_s": summarize(theirs),
        "scripted_overhead_ms": (statistics.median(ours) - statistics.median(theirs)) * 1000,
    }


def run(model_path: Path, *, turns: int, repeat: int, system_tokens: int, num_ctx: int) -> Any:
    from scripts.bundle_models import BUNDLED, own_template

    bundled = next(model for model in BUNDLED if model.key == "smollm2")
    modelfile = bundled.modelfile.replace("{chatml-tools}", own_template("chatml-tools"))
    modelfile = f"FROM {model_path}\n{modelfile}PARAMETER num_ctx {num_ctx}\n"
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-agent-") as tmp:
        server = start_ours(Path(tmp) / "models", 1, Path(tmp))
        server.sampler.stop()
        load_before = os.getloadavg()
        try:
            created = httpx.post(
                server.base_url + "/api/create",
                json={"model": MODEL, "modelfile": modelfile, "stream": False},
                timeout=TIMEOUT,
            )
            created.raise_for_status()
            result = measure(server.base_url, turns, repeat, system_tokens)
        finally:
            server.stop()
    result |= scripted_overhead(turns, system_tokens, max(repeat, 50))
    return {
        "agent_session": {
            "turns": turns,
            "repeat": repeat,
            "num_ctx": num_ctx,
            "load_avg": {"start": list(load_before), "end": list(os.getloadavg())},
            "goal": f"turn {turns} <= {GOAL_RATIO:g} x turn 1; overhead < {GOAL_OVERHEAD_MS:g} ms",
            **result,
        }
    }


def table(result: dict[str, Any]) -> str:
    section = result["agent_session"]
    lines = ["| Figure | value |", "| --- | --- |"]
    lines.append(f"| Turn 1 prompt (count_tokens) | {section['turn_1_prompt_tokens']} tokens |")
    for turn, seconds in enumerate(section["ttft_s"], start=1):
        lines.append(f"| TTFT, turn {turn} (s) | {seconds:.3f} |")
    lines.append(
        f"| Turn {section['turns']} / turn 1 | **{section['turn_n_over_turn_1']:.3f}** "
        f"(goal <= {GOAL_RATIO:g}) |"
    )
    ours, theirs = section["messages_warm_ttft_s"], section["native_warm_ttft_s"]
    lines.append(f"| Warm TTFT, /v1/messages (ms) | {_ms(ours)} |")
    lines.append(f"| Warm TTFT, /api/chat, same prompt (ms) | {_ms(theirs)} |")
    lines.append(
        f"| Overhead over /api/chat (ms) | **{section['overhead_ms']:.2f}** "
        f"(goal < {GOAL_OVERHEAD_MS:g}) |"
    )
    lines.append(f"| Translation in-process (ms) | {section['translate_ms']:.3f} |")
    if "scripted_overhead_ms" in section:
        lines.append(
            f"| Scripted runner: TTFT /v1/messages vs /api/chat (ms) | "
            f"{_ms(section['scripted_messages_ttft_s'])} vs "
            f"{_ms(section['scripted_native_ttft_s'])} |"
        )
        lines.append(
            f"| Scripted runner: overhead over /api/chat (ms) | "
            f"**{section['scripted_overhead_ms']:.2f}** (goal < {GOAL_OVERHEAD_MS:g}) |"
        )
    load = section["load_avg"]
    lines.append(f"| Load average, start / end | {load['start'][0]:.2f} / {load['end'][0]:.2f} |")
    return "\n".join(lines) + "\n"


def _ms(summary: dict[str, Any]) -> str:
    return (
        f"{summary['median'] * 1000:.1f} ({summary['min'] * 1000:.1f}–{summary['max'] * 1000:.1f})"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench agent-session", description=__doc__)
    ap.add_argument("--model", default="smollm2", help="smollm2 or a GGUF path")
    ap.add_argument("--turns", type=int, default=5, help="turns of the session (default 5)")
    ap.add_argument("--repeat", type=int, default=5, help="warm pairs for the overhead")
    ap.add_argument("--system-tokens", type=int, default=3000, help="system prompt size")
    ap.add_argument("--num-ctx", type=int, default=8192, help="context (default 8192)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.run import model_path

    ns = parse_args(argv)
    result = run(
        model_path(ns.model),
        turns=ns.turns,
        repeat=ns.repeat,
        system_tokens=ns.system_tokens,
        num_ctx=ns.num_ctx,
    )
    if ns.json is not None:
        ns.json.write_text(json.dumps(result, indent=2))
    sys.stdout.write(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
