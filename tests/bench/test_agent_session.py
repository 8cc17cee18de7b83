"""`python -m bench agent-session`: the session it replays and the table it prints (its
figures come from a real run, never asserted here)."""

from __future__ import annotations

from bench.run import COMMANDS

from bench import agent_session, stats


def test_it_is_a_bench_command() -> None:
    assert COMMANDS["agent-session"] == "agent_session"


def test_each_turn_adds_one_tool_call_and_its_result() -> None:
    system = agent_session.system_blocks(3000)
    assert 11_000 <= sum(len(block["text"]) for block in system) <= 13_000  # ~3,000 tokens
    bodies = agent_session.session(5, system)
    assert [len(body["messages"]) for body in bodies] == [1, 3, 5, 7, 9]
    assert all(len(body["tools"]) == 20 and body["system"] is system for body in bodies)
    last = bodies[-1]["messages"]
    use, result = last[-2]["content"][0], last[-1]["content"][0]
    assert use["type"] == "tool_use" and result["tool_use_id"] == use["id"]
    assert bodies[3]["messages"] == last[:7]  # a growing session: each turn extends the last


def test_the_native_body_is_the_servers_translation() -> None:
    body = agent_session.session(2, agent_session.system_blocks(100))[-1]
    native = agent_session.native_body(body)
    assert native["model"] == body["model"] and len(native["tools"]) == 20
    assert [m["role"] for m in native["messages"]] == ["system", "user", "assistant", "tool"]
    assert native["options"]["num_predict"] == 1


def test_the_table() -> None:
    result = {
        "agent_session": {
            "turns": 2,
            "turn_1_prompt_tokens": 4000,
            "ttft_s": [10.0, 0.5],
            "turn_n_over_turn_1": 0.05,
            "messages_warm_ttft_s": stats.summarize([0.1]),
            "native_warm_ttft_s": stats.summarize([0.099]),
            "overhead_ms": 1.0,
            "translate_ms": 0.4,
            "load_avg": {"start": [1.0], "end": [2.0]},
        }
    }
    table = agent_session.table(result)
    assert "| Turn 2 / turn 1 | **0.050** (goal <= 0.1) |" in table
    assert "| Overhead over /api/chat (ms) | **1.00** (goal < 2) |" in table
