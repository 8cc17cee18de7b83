"""The prompt cache beyond the slots: time to first token with and without it.

    python -m bench prompt-cache [--model smollm2] [--conversations 16] [--slots 4]
                                 [--history 1500] [--rounds 2] [--long 6000] [--threads N]
                                 [--json out.json]

Two figures, in-process on the runner's own engine (`runner.loader.load`,
`runner.server.prompt_cache_for`, `runner.engine.Engine`: no HTTP, so only the engine's
work is timed):

* **round-robin**: `conversations` chats of `history` tokens each take turns on `slots`
  slots, one request at a time, each asking for one token. The first round fills the
  caches; in each later round every chat comes back with a new short user turn. Without
  the host cache a chat's slot has been taken by then, so its history is evaluated again;
  with it, the history is restored from host RAM. Median TTFT over the later rounds.
* **come back after unload**: a chat of `long` tokens is evaluated in a runner that then
  shuts down (saving its prompt cache to a folder), and a new runner of the same model
  serves the same chat plus a new turn. Its TTFT (the file read included, the model load
  not) against a cold evaluation of that prompt.

TTFT is the time from submitting the job to its first event (with `num_predict` 1 that
is the done line, sent once the first token is sampled).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.run import default_threads, model_path
from ollamapy.runner.engine import Engine, Job
from ollamapy.runner.launch import LaunchArgs
from ollamapy.runner.loader import LoadedModel, load
from ollamapy.runner.native import SamplerChain, init_backend
from ollamapy.runner.protocol import CompletionDone, CompletionError, CompletionEvent
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.runner.server import prompt_cache_for
from ollamapy.types.options import SamplingOptions

ONE_TOKEN = SamplingOptions(temperature=0, num_predict=1)
CACHE_BYTES = 4 << 30
WORDS = ("river", "stone", "lamp", "orchard", "window", "harbor", "letter", "meadow")


def log(msg: str) -> None:
    print(f"[prompt-cache] {msg}", file=sys.stderr, flush=True)


class Runner:
    """A loaded model and its engine, as a runner process builds them."""

    def __init__(self, loaded: LoadedModel, engine: Engine) -> None:
        self.loaded, self.engine = loaded, engine

    def tokens(self, text: str, *, special: bool = False) -> list[int]:
        return self.loaded.model.tokenize(text, add_special=special)

    def ttft(self, tokens: list[int]) -> tuple[float, CompletionDone]:
        """Seconds from submit to the first event, and the done line."""
        model = self.loaded.model
        plan = plan_sampler_chain(ONE_TOKEN, n_vocab=model.n_vocab, n_ctx=self.engine.n_ctx)
        events: queue.Queue[tuple[float, CompletionEvent]] = queue.Queue()
        sampler = SamplerChain(model, plan, tokens)
        job = Job(tokens, ONE_TOKEN, sampler, lambda e: events.put((time.perf_counter(), e)))
        start = time.perf_counter()
        self.engine.submit(job)
        first: float | None = None
        while True:
            at, event = events.get(timeout=3600)
            first = at if first is None else first
            if isinstance(event, CompletionError):
                raise RuntimeError(event.error)
            if isinstance(event, CompletionDone):
                return first - start, event


@contextlib.contextmanager
def runner(
    model: Path, *, slots: int, num_ctx: int, threads: int, cache: int, folder: Path | None
) -> Iterator[Runner]:
    init_backend()
    args = LaunchArgs(
        model=str(model),
        num_ctx=num_ctx,
        parallel=slots,
        num_thread=threads,
        prompt_cache=cache,
        prompt_cache_dir=str(folder) if folder else None,
    )
    loaded = load(args)
    engine = Engine(
        loaded.model,
        loaded.context,
        n_batch=args.num_batch,
        prompt_cache=prompt_cache_for(args, loaded),
    )
    engine.start()
    try:
        yield Runner(loaded, engine)
    finally:
        if engine.close():
            engine.save_prompt_cache()
        loaded.close()


def history(r: Runner, n: int, length: int) -> list[int]:
    """Chat `n`'s history: exactly `length` tokens, its number first so no two share more
    than the chat header."""
    header = r.tokens(f"<|im_start|>system\nConversation {n}.<|im_end|>\n", special=True)
    words = " ".join(WORDS[(n * 7 + i * 3) % len(WORDS)] for i in range(length))
    body = r.tokens(f"<|im_start|>user\n{words}")
    return (header + body)[:length]


def turn(r: Runner, n: int, k: int) -> list[int]:
    return r.tokens(
        f"<|im_end|>\n<|im_start|>user\nQuestion {k} of chat {n}?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def round_robin(ns: argparse.Namespace, model: Path, cache: int) -> dict[str, Any]:
    num_ctx = ns.history + 64 * (ns.rounds + 1)
    with runner(
        model, slots=ns.slots, num_ctx=num_ctx, threads=ns.threads, cache=cache, folder=None
    ) as r:
        chats = [history(r, n, ns.history) for n in range(ns.conversations)]
        for n, chat in enumerate(chats):
            r.ttft(chat + turn(r, n, 0))
        samples: list[float] = []
        sources: dict[str, int] = {}
        for k in range(1, ns.rounds):
            for n, chat in enumerate(chats):
                seconds, done = r.ttft(chat + turn(r, n, k))
                samples.append(seconds)
                key = done.prompt_cached_source or "none"
                sources[key] = sources.get(key, 0) + 1
                log(f"cache={cache} chat {n} round {k}: {seconds * 1000:.0f} ms ({key})")
    return {"median_s": statistics.median(samples), "samples_s": samples, "sources": sources}


def come_back(ns: argparse.Namespace, model: Path) -> dict[str, Any]:
    num_ctx = ns.long + 128
    kw: dict[str, Any] = {"slots": 1, "num_ctx": num_ctx, "threads": ns.threads}
    with tempfile.TemporaryDirectory(prefix="ollamapy-pcache-") as tmp:
        folder = Path(tmp)
        with runner(model, cache=0, folder=None, **kw) as r:
            chat = history(r, 999, ns.long)
            cold, _ = r.ttft(chat + turn(r, 999, 1))
        log(f"cold: {cold * 1000:.0f} ms")
        with runner(model, cache=CACHE_BYTES, folder=folder, **kw) as r:
            r.ttft(chat + turn(r, 999, 0))
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        with runner(model, cache=CACHE_BYTES, folder=folder, **kw) as r:
            warm, done = r.ttft(chat + turn(r, 999, 1))
        log(f"after unload: {warm * 1000:.0f} ms ({done.prompt_cached_source})")
    return {
        "cold_s": cold,
        "restored_s": warm,
        "ratio": warm / cold,
        "source": done.prompt_cached_source,
        "cached_tokens": done.prompt_cached_count,
        "file_bytes": size,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench prompt-cache", description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--conversations", type=int, default=16)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--history", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=2, help="rounds after the first (default 1)")
    ap.add_argument("--long", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-come-back", action="store_true")
    ap.add_argument("--skip-round-robin", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ns = ap.parse_args(argv)
    ns.threads = ns.threads or default_threads()
    model = model_path(ns.model)
    load_start = os.getloadavg()
    result: dict[str, Any] = {"config": {k: str(v) for k, v in vars(ns).items()}}
    if not ns.skip_round_robin:
        rr = result["round_robin"] = {
            "without": round_robin(ns, model, 0),
            "with": round_robin(ns, model, CACHE_BYTES),
        }
        rr["ratio"] = rr["with"]["median_s"] / rr["without"]["median_s"]
    if not ns.skip_come_back:
        result["come_back"] = come_back(ns, model)
    result["load_avg"] = {"start": load_start, "end": os.getloadavg(), "cpus": os.cpu_count()}
    print(render(result))
    if ns.json is not None:
        ns.json.write_text(json.dumps(result, indent=2))
    return 0


def render(result: dict[str, Any]) -> str:
    cfg, rr = result["config"], result.get("round_robin")
    lines = ["| figure | without | with | ratio |", "|---|---|---|---|"]
    if rr is not None:
        lines.append(
            f"| round-robin, {cfg['conversations']} chats / {cfg['slots']} slots, "
            f"{cfg['history']}-token histories: median TTFT | "
            f"{rr['without']['median_s'] * 1000:.0f} ms | "
            f"{rr['with']['median_s'] * 1000:.0f} ms | {rr['ratio']:.3f} |"
        )
    if "come_back" in result:
        cb = result["come_back"]
        lines.append(
            f"| come back after unload, {cfg['long']} tokens: TTFT (cold / restored from "
            f"disk) | {cb['cold_s'] * 1000:.0f} ms | {cb['restored_s'] * 1000:.0f} ms | "
            f"{cb['ratio']:.3f} |"
        )
    la = result["load_avg"]
    lines.append(
        f"\nsources with the cache: {rr['with']['sources'] if rr else '-'}; load average "
        f"{la['start'][0]:.2f} at start, {la['end'][0]:.2f} at end on {la['cpus']} CPUs"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
