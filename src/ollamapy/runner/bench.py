"""Measure single-stream decode speed: our runner over HTTP vs a bare llama_decode loop.

    python -m ollamapy.runner.bench --model PATH [--threads N] [--n-predict 128] [--rounds 3]

The baseline is what `llama-bench -tg` measures: `llama_decode` of one token at a time,
with no sampling and no I/O, in this process. The runner is started as a child process
(exactly as the server starts it) and measured from its own `eval_count/eval_duration`
and from the client's wall clock. Rounds alternate between the two so that noise from
other load on the machine hits both alike; medians and bests are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

from ollamapy.runner import launch
from ollamapy.runner import protocol as p
from ollamapy.runner.loader import load, thread_count
from ollamapy.runner.native import Batch, init_backend

PROMPT = "<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n"
PROMPT += "<|im_start|>assistant\n"


def bare_decode_rate(args: launch.LaunchArgs, n_predict: int) -> float:
    """Tokens/s of a pure llama_decode loop (one token per call), like llama-bench tg."""
    loaded = load(args)
    try:
        ctx, batch = loaded.context, Batch(1)
        try:
            batch.add(0, 0, 0, True)  # warm-up, as llama-bench does
            ctx.decode(batch)
            ctx.seq_rm(0, -1, -1)
            started = time.perf_counter_ns()
            for pos in range(n_predict):
                batch.clear()
                batch.add(pos % 1000 + 1, pos, 0, True)
                if ctx.decode(batch) != 0:
                    raise RuntimeError("decode failed")
            return n_predict / ((time.perf_counter_ns() - started) / 1e9)
        finally:
            batch.close()
    finally:
        loaded.close()


def runner_rates(url: str, n_predict: int, options: dict[str, Any]) -> tuple[float, float]:
    """(runner-reported eval tokens/s, client wall-clock tokens/s after the first token)."""
    body = {"prompt": PROMPT, "options": {"num_predict": n_predict, **options}}
    first = last = 0.0
    with httpx.stream("POST", url + p.COMPLETION_PATH, json=body, timeout=None) as resp:
        for line in resp.iter_lines():
            event = p.parse_completion_line(json.loads(line))
            now = time.perf_counter()
            first = first or now
            last = now
            if isinstance(event, p.CompletionDone):
                if event.eval_count < 16:
                    raise RuntimeError(f"stopped too early ({event.eval_count} tokens)")
                reported = event.eval_count / (event.eval_duration / 1e9)
                return reported, (event.eval_count - 1) / (last - first)
    raise RuntimeError("stream ended without done")


def start_runner(args: launch.LaunchArgs) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ollamapy.runner", *args.to_argv()], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    port = launch.ListeningLine.from_json(json.loads(proc.stdout.readline())).port
    url = f"http://127.0.0.1:{port}"
    while httpx.get(url + p.HEALTH_PATH).status_code != 200:
        time.sleep(0.05)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--n-predict", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    ns = parser.parse_args()
    args = launch.LaunchArgs(model=ns.model, num_ctx=1024, num_thread=thread_count(ns.threads))
    init_backend()
    proc, url = start_runner(args)
    results: dict[str, list[float]] = {"bare": [], "greedy": [], "greedy_wall": [], "default": []}
    try:
        for _ in range(ns.rounds):
            results["bare"].append(bare_decode_rate(args, ns.n_predict))
            greedy, wall = runner_rates(url, ns.n_predict, {"temperature": 0})
            results["greedy"].append(greedy)
            results["greedy_wall"].append(wall)
            results["default"].append(runner_rates(url, ns.n_predict, {"seed": 1})[0])
    finally:
        proc.terminate()
        proc.wait(30)
    report: dict[str, Any] = {"threads": args.num_thread, "n_predict": ns.n_predict}
    for name, pick in (("median", statistics.median), ("best", max)):
        values = {key: round(pick(v), 1) for key, v in results.items()}
        values["ratio_greedy"] = round(values["greedy"] / values["bare"], 3)
        values["ratio_default"] = round(values["default"] / values["bare"], 3)
        report[name] = values
    print(json.dumps(report))


if __name__ == "__main__":
    main()
