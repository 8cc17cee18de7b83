"""Where single-stream decode time goes, layer by layer, in this process.

    python -m bench decode-parts [--rounds 5] [--n-predict 128] [--threads N] [--model smollm2]

`python -m bench decode` compares the whole path (client, server, runner HTTP stream,
engine, sampler, llama_decode) with llama-bench. This peels it: on the same model, threads
and prompt depth, one round measures, in turn,

* `decode`: `llama_decode` of one token per step through our ctypes bindings, no sampling
  (llama-bench's tg loop, in Python);
* `greedy`: the same plus the native greedy sampler (`llama_sampler_sample` builds the
  full-vocabulary candidate array every call);
* `ollama`: the same with the chain Ollama's default options plan (penalties with their
  top-k pre-filter, top_k 40, top_p 0.9, temperature 0.8, dist);
* `engine`: our `Engine` (its thread, slot bookkeeping, UTF-8 and stop handling, events
  into a list) with Ollama's defaults, timed by its own `eval_count / eval_duration`.

Each is a rate in tokens per second; the difference of per-token times between two
neighbours is what that layer costs. Rounds interleave the modes; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.decode import PROMPT
from ollamapy.runner.engine import Engine, Job
from ollamapy.runner.native import Batch, Context, Model, SamplerChain, init_backend
from ollamapy.runner.protocol import CompletionDone, CompletionError, CompletionEvent
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.types.options import SamplingOptions

MODES = ("decode", "greedy", "ollama", "engine")
BENCH_SEED = 42
"""The engine phase samples with Ollama's defaults: a fixed seed makes its draw repeatable."""
NUM_CTX = 4096
"""Our runner's default context (Ollama's): the KV cache the engine decodes against."""


class Parts:
    """One model and context; each method generates `n` tokens after the prompt and
    returns tokens per second of the generation alone."""

    def __init__(self, model_path: Path, threads: int) -> None:
        init_backend()
        self.model = Model(str(model_path))
        self.ctx = Context(
            self.model, n_ctx_seq=NUM_CTX, n_seq_max=1, n_batch=512, n_threads=threads
        )
        self.batch = Batch(512)
        self.prompt = self.model.tokenize(PROMPT, add_special=True)

    def _prefill(self) -> None:
        self.ctx.seq_rm(-1, -1, -1)
        self.batch.clear()
        self.batch.add_run(self.prompt, 0, 0, True)
        self._decode()

    def _decode(self) -> None:
        if self.ctx.decode(self.batch) != 0:
            raise RuntimeError("llama_decode failed")

    def _loop(self, n: int, pick: Callable[[], int]) -> float:
        """Prefill, then `n` steps of decode-one-token-then-pick; t/s of the steps."""
        self._prefill()
        pos, token = len(self.prompt), pick()
        start = time.perf_counter()
        for _ in range(n):
            self.batch.clear()
            self.batch.add(token, pos, 0, True)
            self._decode()
            pos += 1
            token = pick()
        return n / (time.perf_counter() - start)

    def decode(self, n: int) -> float:
        token = self.prompt[-1]
        return self._loop(n, lambda: token)

    def sampled(self, n: int, options: SamplingOptions) -> float:
        plan = plan_sampler_chain(options, n_vocab=self.model.n_vocab, n_ctx=NUM_CTX)
        with SamplerChain(self.model, plan, history=self.prompt) as chain:
            return self._loop(n, lambda: chain.sample(self.ctx, -1))

    def engine(self, n: int) -> float:
        """Our engine, Ollama's defaults; its own eval_count / eval_duration."""
        options = SamplingOptions(
            num_predict=n, seed=BENCH_SEED
        )  # a fixed draw: no early EOG by chance
        plan = plan_sampler_chain(options, n_vocab=self.model.n_vocab, n_ctx=NUM_CTX)
        done = threading.Event()
        events: list[CompletionEvent] = []

        def emit(event: CompletionEvent) -> None:
            events.append(event)
            if isinstance(event, CompletionDone | CompletionError):
                done.set()

        engine = Engine(self.model, self.ctx, n_batch=512)
        engine.start()
        try:
            self.ctx.seq_rm(-1, -1, -1)
            sampler = SamplerChain(self.model, plan, history=self.prompt)
            engine.submit(Job(list(self.prompt), options, sampler, emit))
            if not done.wait(600):
                raise RuntimeError("the engine did not finish")
        finally:
            engine.close()
        final = events[-1]
        if not isinstance(final, CompletionDone):
            raise RuntimeError(f"engine: {final}")
        return final.eval_count / (final.eval_duration / 1e9)

    def sample_cost(self, options: SamplingOptions, calls: int = 200, tries: int = 5) -> float:
        """Seconds per `llama_sampler_sample` on the same logits (no decode between):
        the best of `tries` batches of `calls`, so a busy machine's preemptions drop out."""
        plan = plan_sampler_chain(options, n_vocab=self.model.n_vocab, n_ctx=NUM_CTX)
        self._prefill()
        best = float("inf")
        with SamplerChain(self.model, plan, history=self.prompt) as chain:
            for _ in range(tries):
                start = time.perf_counter()
                for _ in range(calls):
                    chain.sample(self.ctx, -1)
                best = min(best, (time.perf_counter() - start) / calls)
        return best

    def run_mode(self, mode: str, n: int) -> float:
        if mode == "decode":
            return self.decode(n)
        if mode == "greedy":
            return self.sampled(n, SamplingOptions(temperature=0, repeat_penalty=1.0))
        if mode == "ollama":
            return self.sampled(n, SamplingOptions())
        return self.engine(n)

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()


def measure(model_path: Path, threads: int, rounds: int, n: int) -> dict[str, list[float]]:
    """`rounds` rounds of every mode in turn (the order rotates); t/s samples per mode.

    The model is loaded here and the loops run in one other thread, as in our runner
    (loaded in a worker, decoded by the engine's thread): loops driven from the thread
    that loaded the model were several times slower on this loaded 2-core machine
    (1-12 t/s against 20-40, in the same process; OMP_WAIT_POLICY=passive made them
    fast too), which is about llama.cpp's OpenMP team, not about what is measured here.
    """
    parts = Parts(model_path, threads)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="decode-parts") as worker:
            return worker.submit(_rounds, parts, rounds, n).result()
    finally:
        parts.close()


SAMPLERS = {
    "greedy": SamplingOptions(temperature=0, repeat_penalty=1.0),
    "ollama defaults": SamplingOptions(),
    "ollama defaults, repeat_penalty 1.0": SamplingOptions(repeat_penalty=1.0),
}
"""Sampler chains whose cost per token `sampler_costs` measures alone."""


def sampler_costs(model_path: Path, threads: int) -> dict[str, float]:
    """Microseconds per sampled token for each chain in `SAMPLERS` (no decode timed)."""
    parts = Parts(model_path, threads)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="decode-parts") as worker:
            return {
                name: worker.submit(parts.sample_cost, options).result() * 1e6
                for name, options in SAMPLERS.items()
            }
    finally:
        parts.close()


def _rounds(parts: Parts, rounds: int, n: int) -> dict[str, list[float]]:
    parts.decode(8)  # warm-up
    out: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
            out[mode].append(parts.run_mode(mode, n))
    return out


def table(samples: dict[str, list[float]]) -> str:
    """Median t/s per mode, ms per token, and what each layer adds to the one before."""
    lines = [
        "| Mode | t/s median (min–max) | ms/token | + ms/token vs previous |",
        "|---|---|---|---|",
    ]
    previous = None
    for mode in MODES:
        values = samples[mode]
        med = statistics.median(values)
        ms = 1000 / med
        added = "" if previous is None else f"{ms - previous:+.3f}"
        lines.append(
            f"| {mode} | {med:.1f} ({min(values):.1f}–{max(values):.1f}) | {ms:.3f} | {added} |"
        )
        previous = ms
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from bench.run import default_threads, model_path

    ap = argparse.ArgumentParser(prog="python -m bench decode-parts", description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n-predict", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ns = ap.parse_args(argv)
    threads = ns.threads or default_threads()
    print(f"[bench] decode parts: threads {threads}, n {ns.n_predict}", file=sys.stderr)
    path = model_path(ns.model)
    print(table(measure(path, threads, max(1, ns.rounds), ns.n_predict)))
    print("| Sampler chain alone | us/token (best of 5x200) |\n|---|---|")
    for name, us in sampler_costs(path, threads).items():
        print(f"| {name} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
