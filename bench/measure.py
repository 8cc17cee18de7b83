"""Client-side measurements against our server (Ollama API) and llama-server.

Every request uses a prompt that differs from the previous one in its first tokens, so no
prefix cache can shorten prompt evaluation unless a figure is about the prefix cache.

Both servers sample the same way: plain greedy (`SAMPLING`). Ollama's default
repeat_penalty of 1.1 would change our greedy text and so where the end-of-sequence token
falls; a stream that stops early leaves its slot empty for the rest of a concurrent round
and the two servers would then be measured on different numbers of generated tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from bench.stats import rate

NS = 1e9
SAMPLING: dict[str, Any] = {"temperature": 0, "repeat_penalty": 1.0}
"""Greedy, no penalties: the same in both servers (llama-server's own defaults)."""
TIMEOUT = httpx.Timeout(600.0, connect=10.0)
PARAGRAPH = (
    "The lighthouse keeper climbed the spiral stairs every evening, counting the steps, "
    "checking the lamp, polishing the great lens and writing the weather in his log. "
    "Ships passed in the dark, and each one signalled its thanks with a short horn. "
)


def counting_prompt(start: int, numbers: int) -> str:
    """`start start+1 ...`: a prompt that a model keeps continuing (no early end of text)."""
    return " ".join(str(i) for i in range(start, start + numbers))


def numbers_for(tokens: int, tokens_per_number: float) -> int:
    """How many numbers make a prompt of about `tokens` tokens."""
    return max(1, round(tokens / max(tokens_per_number, 0.1)))


def long_text(tag: int, tokens: int) -> str:
    """About `tokens` tokens of prose whose first words are unique to `tag`."""
    reps = max(1, tokens // 45)
    return f"Report number {tag}. " + PARAGRAPH * reps


def shared_system_prompts(tag: int, system_tokens: int, clients: int) -> list[str]:
    """One prompt per client: the same `system_tokens`-token system text (new for every
    `tag`), then a short question of the client's own, as a chat UI with many users sends."""
    system = long_text(tag, system_tokens)
    return [
        f"{system}\nQuestion {i}: continue {counting_prompt(100 * i + tag, 4)}"
        for i in range(clients)
    ]


@dataclass
class Sample:
    """One request's figures; rates in tokens/s, times in seconds."""

    ttft_s: float | None = None
    total_s: float | None = None
    prompt_tokens: int | None = None
    prompt_eval_tps: float | None = None
    eval_tokens: int | None = None
    decode_tps: float | None = None
    load_s: float | None = None
    text: str = ""


def _lines(resp: httpx.Response, sse: bool) -> Iterator[dict[str, Any]]:
    """JSON objects from an NDJSON or server-sent-events stream."""
    for line in resp.iter_lines():
        if sse:
            if not line.startswith("data:"):
                continue
            line = line[5:].strip()
            if line == "[DONE]":
                return
        if line.strip():
            yield json.loads(line)


def _stream(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    sse: bool,
    content: Callable[[dict[str, Any]], str],
) -> tuple[float | None, float, dict[str, Any], str]:
    """POST a streaming request; (time to first text, total time, last object, full text)."""
    t0 = time.perf_counter()
    ttft, last, parts = None, {}, []
    with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        for obj in _lines(resp, sse):
            if "error" in obj:
                raise RuntimeError(f"{url}: {obj['error']}")
            piece = content(obj)
            if piece and ttft is None:
                ttft = time.perf_counter() - t0
            parts.append(piece)
            last = obj
    return ttft, time.perf_counter() - t0, last, "".join(parts)


def _ollama_text(event: dict[str, Any]) -> str:
    return str(event.get("response", ""))


def _sse_text(event: dict[str, Any]) -> str:
    return str(event.get("content", ""))


def ours_sample(final: dict[str, Any]) -> Sample:
    """Figures from the final (`done`) object of an Ollama generate/chat response."""
    return Sample(
        prompt_tokens=final.get("prompt_eval_count"),
        prompt_eval_tps=rate(
            final.get("prompt_eval_count"), final.get("prompt_eval_duration", 0) / NS
        ),
        eval_tokens=final.get("eval_count"),
        decode_tps=rate(final.get("eval_count"), final.get("eval_duration", 0) / NS),
        load_s=final.get("load_duration", 0) / NS,
    )


def llama_sample(final: dict[str, Any]) -> Sample:
    """Figures from the `timings` of a llama-server /completion response."""
    t = final.get("timings") or {}
    return Sample(
        prompt_tokens=t.get("prompt_n"),
        prompt_eval_tps=rate(t.get("prompt_n"), t.get("prompt_ms", 0) / 1000),
        eval_tokens=t.get("predicted_n"),
        decode_tps=rate(t.get("predicted_n"), t.get("predicted_ms", 0) / 1000),
    )


class Ours:
    """Our server through the Ollama API; the model is called `model` in its store."""

    def __init__(self, base_url: str, model: str, num_ctx: int, threads: int) -> None:
        self.base, self.model = base_url, model
        self.options = {**SAMPLING, "num_ctx": num_ctx, "num_thread": threads}
        self.client = httpx.Client(timeout=TIMEOUT)

    def create(self, gguf: str) -> None:
        """Create the model from a GGUF path (its own chat template is kept)."""
        body = {"model": self.model, "modelfile": f"FROM {gguf}", "stream": False}
        self.client.post(self.base + "/api/create", json=body).raise_for_status()

    def _body(self, prompt: str, n_predict: int, stream: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": prompt,
            "raw": True,
            "stream": stream,
            "options": {**self.options, "num_predict": n_predict},
        }

    def generate(self, prompt: str, n_predict: int) -> Sample:
        """One streamed raw generate request, measured."""
        ttft, total, final, text = _stream(
            self.client,
            self.base + "/api/generate",
            self._body(prompt, n_predict, True),
            sse=False,
            content=_ollama_text,
        )
        s = ours_sample(final)
        s.ttft_s, s.total_s, s.text = ttft, total, text
        return s

    def generate_blocking(self, client: httpx.Client, prompt: str, n_predict: int) -> Sample:
        """One non-streamed raw generate request (used by the concurrent clients)."""
        resp = client.post(self.base + "/api/generate", json=self._body(prompt, n_predict, False))
        resp.raise_for_status()
        return ours_sample(resp.json())

    def generate_streamed(self, client: httpx.Client, prompt: str, n_predict: int) -> Sample:
        """One streamed raw generate request read to its end (a chat UI's client)."""
        body = self._body(prompt, n_predict, True)
        _, _, final, _ = _stream(
            client, self.base + "/api/generate", body, sse=False, content=_ollama_text
        )
        return ours_sample(final)

    def unload(self) -> None:
        """Unload the model (`keep_alive: 0`) and wait until /api/ps no longer lists it."""
        body = {"model": self.model, "keep_alive": 0}
        self.client.post(self.base + "/api/generate", json=body).raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.client.get(self.base + "/api/ps").json().get("models"):
                return
            time.sleep(0.1)
        raise RuntimeError("the model is still loaded 30 s after keep_alive: 0")

    def chat(self, messages: list[dict[str, str]], n_predict: int) -> Sample:
        """One streamed /api/chat request, measured."""
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "options": {**self.options, "num_predict": n_predict},
        }
        ttft, total, final, text = _stream(
            self.client,
            self.base + "/api/chat",
            body,
            sse=False,
            content=lambda o: str((o.get("message") or {}).get("content", "")),
        )
        s = ours_sample(final)
        s.ttft_s, s.total_s, s.text = ttft, total, text
        return s

    def close(self) -> None:
        self.client.close()


class LlamaServer:
    """llama-server's native /completion endpoint, prompt cache off."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.client = httpx.Client(timeout=TIMEOUT)
        self.cache_prompt = False
        """llama-server's own prompt cache (its default is on): off where the figure is
        compute, on where the figure is cache reuse."""

    def _body(self, prompt: str, n_predict: int, stream: bool) -> dict[str, Any]:
        return {
            "prompt": prompt,
            "n_predict": n_predict,
            **SAMPLING,
            "cache_prompt": self.cache_prompt,
            "stream": stream,
        }

    def generate(self, prompt: str, n_predict: int) -> Sample:
        """One streamed /completion request, measured."""
        ttft, total, final, text = _stream(
            self.client,
            self.base + "/completion",
            self._body(prompt, n_predict, True),
            sse=True,
            content=_sse_text,
        )
        s = llama_sample(final)
        s.ttft_s, s.total_s, s.text = ttft, total, text
        return s

    def generate_blocking(self, client: httpx.Client, prompt: str, n_predict: int) -> Sample:
        """One non-streamed /completion request (used by the concurrent clients)."""
        resp = client.post(self.base + "/completion", json=self._body(prompt, n_predict, False))
        resp.raise_for_status()
        return llama_sample(resp.json())

    def generate_streamed(self, client: httpx.Client, prompt: str, n_predict: int) -> Sample:
        """One streamed /completion request (server-sent events) read to its end."""
        body = self._body(prompt, n_predict, True)
        _, _, final, _ = _stream(
            client, self.base + "/completion", body, sse=True, content=_sse_text
        )
        return llama_sample(final)

    def close(self) -> None:
        self.client.close()


Blocking = Callable[[httpx.Client, str, int], Sample]


def concurrent(
    call: Blocking, prompts: list[str], n_predict: int
) -> tuple[float, float, list[Sample]]:
    """All prompts at once, one client each: (wall t/s, sum of per-stream t/s, samples).

    Wall t/s is generated tokens over the wall time from the common start to the last
    answer, measured here, so it is comparable between servers.
    """
    clients = [httpx.Client(timeout=TIMEOUT) for _ in prompts]
    start = threading.Barrier(len(prompts) + 1)

    def one(i: int) -> Sample:
        start.wait()
        return call(clients[i], prompts[i], n_predict)

    try:
        with ThreadPoolExecutor(len(prompts)) as pool:
            futures = [pool.submit(one, i) for i in range(len(prompts))]
            start.wait()
            t0 = time.perf_counter()
            samples = [f.result() for f in futures]
            wall = time.perf_counter() - t0
    finally:
        for c in clients:
            c.close()
    tokens = sum(s.eval_tokens or 0 for s in samples)
    per_stream = sum(s.decode_tps or 0.0 for s in samples)
    return tokens / wall, per_stream, samples
