"""Server overhead before the first token of a warm chat, against the conversation's length.

    python -m bench overhead [--sizes 2,10,50,100,200,300,500] [--repeat 3] [--num-ctx 8192]
                             [--truncating-ctx 2048] [--model smollm2] [--json out.json]

For each size N a conversation of N short messages (a system prompt first, then user and
assistant turns alternating, about 10 tokens each) goes once to `/api/chat` to fill the
runner's prefix cache; then the same conversation plus one new user message (a different
one each time) goes `repeat` times, streamed, with `num_predict: 1`. Each of those is
measured on the client: the time from sending the (pre-encoded) body to the first NDJSON
line that carries text or is the done line, minus the engine's own prompt time (the done
line's `prompt_eval_duration`). What is left is everything the server and the runner do
before the engine starts on the prompt, and after it samples the first token: parsing,
template rendering, truncation, tokenizing, the hops and the first write.

Two variants: `fits` uses a `num_ctx` that holds the whole conversation (the model's
trained 8192 for SmolLM2; ChatML makes each message about 21 tokens, so past about 380
messages this variant cuts too), `truncating` a `num_ctx` that
it outgrows, so the server walks back and drops the oldest turns. Each size uses its own
conversation (its number opens the system prompt), so a size never starts from the
previous size's cache. Every figure is the median over the repeats; min and max go with
it as the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.measure import NS, Ours
from bench.servers import start_ours
from bench.stats import summarize

SIZES = (2, 10, 50, 100, 200, 300, 500)
FITS_CTX = 8192
"""SmolLM2's trained context: about 380 of these messages (~21 tokens each in ChatML) fit."""
TRUNCATING_CTX = 2048
"""Small enough that conversations of more than ~120 such messages must be truncated."""
GOAL_MS = 10.0
GOAL_FLAT_MS = 2.0

_SUBJECTS = ("The red box", "A blue cup", "My old map", "The green key", "A tall lamp")
_PLACES = ("on shelf", "in room", "near door", "under desk", "by window")


def message_text(n: int, i: int) -> str:
    """Message `i` of conversation `n`: about 10 tokens, distinct from its neighbours."""
    return f"{_SUBJECTS[i % 5]} is {_PLACES[(i // 5) % 5]} {i} of {n}."


def conversation(n: int) -> list[dict[str, str]]:
    """A system prompt, then `n` messages alternating user and assistant (user first)."""
    messages = [{"role": "system", "content": f"Conversation {n}. Answer in a few words."}]
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": message_text(n, i)})
    return messages


def follow_up(messages: list[dict[str, str]], k: int) -> list[dict[str, str]]:
    """The conversation plus new user message `k` (different for every `k`); the
    conversation ends with an assistant turn first when it ended with a user turn."""
    out = list(messages)
    if out[-1]["role"] == "user":
        out.append({"role": "assistant", "content": "Noted."})
    out.append({"role": "user", "content": f"Question {k}: where is the key?"})
    return out


@dataclass
class Reading:
    """One measured request: client TTFT, the engine's prompt time and token count."""

    ttft_s: float
    prompt_eval_s: float
    prompt_eval_count: int | None

    @property
    def overhead_s(self) -> float:
        return self.ttft_s - self.prompt_eval_s


def _first_line_seen(obj: dict[str, Any]) -> bool:
    return bool(obj.get("done")) or bool((obj.get("message") or {}).get("content"))


def chat_once(
    client: httpx.Client, base: str, model: str, messages: list[dict[str, str]], num_ctx: int
) -> Reading:
    """One streamed `/api/chat` with `num_predict: 1`, read to its done line."""
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "options": {"num_ctx": num_ctx, "num_predict": 1},
    }
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    ttft, final = None, {}
    t0 = time.perf_counter()
    with client.stream("POST", base + "/api/chat", content=data, headers=headers) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if "error" in obj:
                raise RuntimeError(f"/api/chat: {obj['error']}")
            if ttft is None and _first_line_seen(obj):
                ttft = time.perf_counter() - t0
            final = obj
    if ttft is None or not final.get("done"):
        raise RuntimeError("/api/chat: the stream ended without a done line")
    return Reading(ttft, final.get("prompt_eval_duration", 0) / NS, final.get("prompt_eval_count"))


def measure_size(
    client: httpx.Client, base: str, model: str, n: int, num_ctx: int, repeat: int
) -> dict[str, Any]:
    """Warm the cache with size `n`'s conversation, then `repeat` follow-ups, measured."""
    messages = conversation(n)
    warm = chat_once(client, base, model, messages, num_ctx)
    readings = [
        chat_once(client, base, model, follow_up(messages, k), num_ctx) for k in range(repeat)
    ]
    return {
        "messages": n,
        "warm_prompt_tokens": warm.prompt_eval_count,
        "warm_ttft_s": warm.ttft_s,
        "overhead_s": summarize(r.overhead_s for r in readings),
        "ttft_s": summarize(r.ttft_s for r in readings),
        "prompt_eval_s": summarize(r.prompt_eval_s for r in readings),
        "prompt_eval_count": [r.prompt_eval_count for r in readings],
    }


def measure_variant(
    ours: Ours, sizes: Sequence[int], num_ctx: int, repeat: int, log: Any = None
) -> dict[str, Any]:
    """Every size in one variant, on a server where `ours.model` exists."""
    rows = []
    for n in sizes:
        if log is not None:
            log(f"overhead: {n} messages, num_ctx {num_ctx}")
        row = measure_size(ours.client, ours.base, ours.model, n, num_ctx, repeat)
        rows.append(row)
        if log is not None:
            log(f"overhead: {n} messages, num_ctx {num_ctx}: {_ms(row['overhead_s'])} ms")
    return {"num_ctx": num_ctx, "rows": rows, "verdict": verdict(rows)}


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Spread of the medians over the sizes and whether the issue's goal holds."""
    medians = [r["overhead_s"]["median"] * 1000 for r in rows if r["overhead_s"]]
    if not medians:
        return {"max_ms": None, "spread_ms": None, "meets_goal": False}
    spread = max(medians) - min(medians)
    return {
        "max_ms": max(medians),
        "spread_ms": spread,
        "meets_goal": max(medians) < GOAL_MS and spread <= GOAL_FLAT_MS,
    }


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(
    model_path: Path,
    *,
    sizes: Sequence[int] = SIZES,
    repeat: int = 3,
    num_ctx: int = FITS_CTX,
    truncating_ctx: int | None = TRUNCATING_CTX,
) -> dict[str, Any]:
    """Start our server, create the model, measure both variants; the `overhead` section."""
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-overhead-") as tmp:
        server = start_ours(Path(tmp) / "models", 1, Path(tmp))
        # No memory figure here: the sampler's /proc walk 5 times a second would take
        # CPU from the two decode threads on a 2-core machine.
        server.sampler.stop()
        ours = Ours(server.base_url, "bench", num_ctx, 0)
        load_before = os.getloadavg()
        try:
            ours.create(str(model_path))
            variants = {"fits": measure_variant(ours, sizes, num_ctx, repeat, _log)}
            if truncating_ctx:
                variants["truncating"] = measure_variant(ours, sizes, truncating_ctx, repeat, _log)
        finally:
            ours.close()
            server.stop()
    return {
        "overhead": {
            "repeat": repeat,
            "load_avg": {"start": list(load_before), "end": list(os.getloadavg())},
            "goal": f"under {GOAL_MS:g} ms and flat within {GOAL_FLAT_MS:g} ms",
            "variants": variants,
        }
    }


def _ms(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "—"
    return (
        f"{summary['median'] * 1000:.1f} ({summary['min'] * 1000:.1f}–{summary['max'] * 1000:.1f})"
    )


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per variant and size, overhead first."""
    section = result.get("overhead") or {}
    lines = [
        "| Variant (num_ctx) | Messages | Overhead ms | TTFT ms | Engine prompt ms "
        "| Prompt tokens (warm-up) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, variant in (section.get("variants") or {}).items():
        for row in variant["rows"]:
            lines.append(
                f"| {name} ({variant['num_ctx']}) | {row['messages']} | {_ms(row['overhead_s'])} "
                f"| {_ms(row['ttft_s'])} | {_ms(row['prompt_eval_s'])} "
                f"| {row['warm_prompt_tokens']} |"
            )
    for name, variant in (section.get("variants") or {}).items():
        v = variant["verdict"]
        if v["max_ms"] is not None:
            lines.append(
                f"\n{name}: max median {v['max_ms']:.1f} ms, spread {v['spread_ms']:.1f} ms; "
                f"goal ({section.get('goal')}) {'met' if v['meets_goal'] else 'NOT met'}."
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench overhead", description=__doc__)
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="message counts")
    ap.add_argument("--repeat", type=int, default=3, help="measured follow-ups per size")
    ap.add_argument("--num-ctx", type=int, default=FITS_CTX, help="the variant that fits")
    ap.add_argument(
        "--truncating-ctx",
        type=int,
        default=TRUNCATING_CTX,
        help="num_ctx of the variant that truncates (0: skip it)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ns = ap.parse_args(argv)
    ns.sizes = [int(s) for s in ns.sizes.split(",")]
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    from bench.run import model_path

    ns = parse_args(argv)
    result = run(
        model_path(ns.model),
        sizes=ns.sizes,
        repeat=max(1, ns.repeat),
        num_ctx=ns.num_ctx,
        truncating_ctx=ns.truncating_ctx or None,
    )
    if ns.json is not None:
        ns.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
