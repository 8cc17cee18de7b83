"""Single-stream decode through a streamed `/api/generate`, against `llama-bench` tg128.

    python -m bench decode [--pairs 5] [--n-predict 128] [--threads N] [--model smollm2]
                           [--json out.json]

Our server gets a fixed prompt with Ollama's default options (no sampling option is sent:
temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1 over the last 64 tokens and a
random seed, as Ollama's defaults are) plus `num_predict` and the thread count, streamed.
`llama-bench -p 0 -n 128 -d <prompt tokens>` runs on the same model and threads, at the
depth our prompt leaves the context at. The two alternate in `pairs` pairs (which side
goes first alternates too, so a drift in the machine's load hits both alike); each pair
gives a ratio, and the figure is their median.

Our rate is given two ways:

* `engine`: `eval_count / eval_duration` from the done line. The runner's clock starts
  after the prompt's decode and stops after the last token is sampled, so it covers
  n - 1 single-token decodes and n samplings: llama-bench's tg is n decodes of one token
  each, timed, with no sampling. This is the figure that matches llama-bench's
  definition (the extra token it credits makes it n/(n-1), 0.8 % at 128, optimistic).
* `client`: (eval_count - 1) / (arrival of the done line - arrival of the first text),
  on this side of the HTTP stream: what a user sees, with every hop included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.measure import NS, TIMEOUT
from bench.reference import Reference
from bench.servers import descendants, start_ours
from bench.stats import rate, ratio, summarize

PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who counts the ships that pass "
    "his island every night, and about the storm that changed his life."
)
GOAL = 0.97
MODEL = "bench"


CLEAN = 0.10
"""A pair is clean when other processes used at most this share of the machine's CPUs
during each of its two runs (see `OthersCpu`)."""


def _proc_stat_busy() -> float:
    """Seconds of CPU time the whole machine has spent not idle (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """CPU seconds of this process, its reaped children (llama-bench) and its live
    descendants (our server and its runner)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    tick = os.sysconf("SC_CLK_TCK")
    for pid in descendants(os.getpid()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(stat[11]) + int(stat[12])) / tick  # utime, stime
    return total


class OthersCpu:
    """The share of the machine's CPUs that processes other than ours used while a
    block ran: on 2 cores, one busy neighbour stalls llama.cpp's two threads at every
    barrier, and a run's rate then drops several-fold; this says which runs it hit."""

    def __enter__(self) -> OthersCpu:
        self.share: float | None = None
        self._t, self._busy, self._own = time.perf_counter(), _proc_stat_busy(), _own_cpu()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self._t
        others = (_proc_stat_busy() - self._busy) - (_own_cpu() - self._own)
        self.share = max(0.0, others) / (wall * (os.cpu_count() or 1)) if wall > 0 else None


@dataclass
class Stream:
    """One streamed generate: the done line's counters and the client's arrival times."""

    eval_count: int
    eval_duration_s: float
    prompt_eval_count: int
    first_text_s: float
    done_s: float

    @property
    def engine_tps(self) -> float | None:
        return rate(self.eval_count, self.eval_duration_s)

    @property
    def client_tps(self) -> float | None:
        return rate(self.eval_count - 1, self.done_s - self.first_text_s)


def generate(client: httpx.Client, base: str, prompt: str, n_predict: int, threads: int) -> Stream:
    """One streamed `/api/generate` with Ollama's default sampling, read to its end."""
    body = {
        "model": MODEL,
        "prompt": prompt,
        "stream": True,
        "options": {"num_predict": n_predict, "num_thread": threads},
    }
    first, final = None, {}
    t0 = time.perf_counter()
    with client.stream("POST", base + "/api/generate", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if "error" in obj:
                raise RuntimeError(f"/api/generate: {obj['error']}")
            if first is None and obj.get("response"):
                first = time.perf_counter() - t0
            final = obj
    done = time.perf_counter() - t0
    if not final.get("done"):
        raise RuntimeError("/api/generate: the stream ended without a done line")
    return Stream(
        eval_count=int(final.get("eval_count", 0)),
        eval_duration_s=final.get("eval_duration", 0) / NS,
        prompt_eval_count=int(final.get("prompt_eval_count", 0)),
        first_text_s=done if first is None else first,
        done_s=done,
    )


def llama_bench_cmd(
    ref: Reference, model: Path, threads: int, n_gen: int, depth: int, reps: int
) -> list[str]:
    """tg only (`-p 0`) at `depth`, `reps` timed runs after llama-bench's own warm-up."""
    return [
        str(ref.llama_bench),
        *("-m", str(model), "-p", "0", "-n", str(n_gen), "-d", str(depth)),
        *("-t", str(threads), "-r", str(reps), "-o", "json"),
    ]


def parse_tg(entries: list[dict[str, Any]]) -> float:
    """The mean tg t/s of one llama-bench JSON output (its `avg_ts`, else the samples')."""
    for entry in entries:
        if entry.get("n_gen", 0) > 0 and entry.get("n_prompt", 0) == 0:
            samples = entry.get("samples_ts") or []
            return float(entry.get("avg_ts") or statistics.mean(samples))
    raise ValueError("no tg entry in llama-bench's output")


def llama_bench_tg(cmd: list[str]) -> float:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return parse_tg(json.loads(proc.stdout))


def pair_rows(
    streams: list[Stream],
    tg: list[float],
    others_ours: Sequence[float | None] | None = None,
    others_ref: Sequence[float | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per pair: both rates of ours, llama-bench's, the two ratios, and the
    share of the CPUs other processes took during each side's run (None: not known)."""
    unknown = [None] * len(streams)
    return [
        {
            "engine_tps": s.engine_tps,
            "client_tps": s.client_tps,
            "llama_bench_tps": t,
            "engine_ratio": ratio(s.engine_tps, t),
            "client_ratio": ratio(s.client_tps, t),
            "eval_count": s.eval_count,
            "others_cpu_ours": a,
            "others_cpu_ref": b,
        }
        for s, t, a, b in zip(
            streams, tg, others_ours or unknown, others_ref or unknown, strict=True
        )
    ]


def _clean(row: dict[str, Any]) -> bool:
    shares = (row.get("others_cpu_ours"), row.get("others_cpu_ref"))
    return all(v is not None and v <= CLEAN for v in shares)


def summarize_pairs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ranges over the pairs (and over the clean pairs alone), and the goal
    check on the engine ratio."""
    keys = ("engine_ratio", "client_ratio", "engine_tps", "client_tps", "llama_bench_tps")
    out: dict[str, Any] = {key: summarize(r[key] for r in rows) for key in keys}
    clean = [r for r in rows if _clean(r)]
    out["clean_pairs"] = len(clean)
    out["clean_engine_ratio"] = summarize(r["engine_ratio"] for r in clean)
    out["clean_client_ratio"] = summarize(r["client_ratio"] for r in clean)
    engine = out["engine_ratio"]
    out["meets_goal"] = bool(engine and engine["median"] >= GOAL)
    return out


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


TgRate = Callable[[int], float]
"""llama-bench's tg t/s at a depth (`llama_bench_rate`); a test passes its own."""


def llama_bench_rate(
    ref: Reference, model: Path, threads: int, n_gen: int, reps: int = 1
) -> tuple[TgRate, Callable[[int], list[str]]]:
    """The tg measure for `measure`, and the command it runs at a depth (for the record)."""

    def command(depth: int) -> list[str]:
        return llama_bench_cmd(ref, model, threads, n_gen, depth, reps)

    return lambda depth: llama_bench_tg(command(depth)), command


def measure(
    base: str,
    tg_rate: TgRate,
    *,
    pairs: int,
    n_predict: int,
    threads: int,
    prompt: str = PROMPT,
) -> dict[str, Any]:
    """Interleaved pairs against a server where `MODEL` exists; llama-bench runs at the
    depth our prompt leaves the context at (learnt from a warm-up that loads the runner)."""
    with httpx.Client(timeout=TIMEOUT) as client:
        warm = generate(client, base, prompt, 8, threads)
        streams: list[Stream] = []
        tg: list[float] = []
        others: dict[str, list[float | None]] = {"ours": [], "ref": []}
        for i in range(pairs):
            for side in ("ours", "ref") if i % 2 == 0 else ("ref", "ours"):
                with OthersCpu() as cpu:
                    if side == "ours":
                        streams.append(generate(client, base, prompt, n_predict, threads))
                    else:
                        tg.append(tg_rate(warm.prompt_eval_count))
                others[side].append(cpu.share)
            _log(
                f"decode pair {i + 1}: ours {_f(streams[-1].engine_tps)} t/s engine, "
                f"{_f(streams[-1].client_tps)} client; llama-bench {tg[-1]:.1f}; "
                f"others' CPU {_f(others['ours'][-1], 2)} / {_f(others['ref'][-1], 2)}"
            )
    rows = pair_rows(streams, tg, others["ours"], others["ref"])
    return {
        "pairs": rows,
        "summary": summarize_pairs(rows),
        "prompt_tokens": warm.prompt_eval_count,
    }


def run(
    model_path: Path,
    ref: Reference,
    *,
    pairs: int = 5,
    n_predict: int = 128,
    threads: int,
) -> dict[str, Any]:
    """Start our server, create the model, measure; the `decode` section."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-decode-") as tmp:
        server = start_ours(Path(tmp) / "models", 1, Path(tmp))
        # No memory figure here: the sampler's /proc walk 5 times a second would take
        # CPU from the two decode threads on a 2-core machine.
        server.sampler.stop()
        try:
            body = {"model": MODEL, "modelfile": f"FROM {model_path}", "stream": False}
            httpx.post(
                server.base_url + "/api/create", json=body, timeout=TIMEOUT
            ).raise_for_status()
            tg_rate, command = llama_bench_rate(ref, model_path, threads, n_predict)
            section = measure(
                server.base_url, tg_rate, pairs=pairs, n_predict=n_predict, threads=threads
            )
            section["llama_bench_command"] = " ".join(command(section["prompt_tokens"]))
        finally:
            server.stop()
    section.update(
        threads=threads,
        n_predict=n_predict,
        goal=f"engine ratio median >= {GOAL}",
        load_avg={"start": list(load_before), "end": list(os.getloadavg())},
    )
    return {"decode": section}


def _f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per pair, then the medians."""
    section = result.get("decode") or {}
    lines = [
        "| Pair | ours engine t/s | ours client t/s | llama-bench tg t/s "
        "| engine / tg | client / tg | tokens | others' CPU (ours / tg) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, row in enumerate(section.get("pairs") or [], 1):
        lines.append(
            f"| {i} | {_f(row['engine_tps'])} | {_f(row['client_tps'])} "
            f"| {_f(row['llama_bench_tps'])} | {_f(row['engine_ratio'], 3)} "
            f"| {_f(row['client_ratio'], 3)} | {row['eval_count']} "
            f"| {_f(row.get('others_cpu_ours'), 2)} / {_f(row.get('others_cpu_ref'), 2)} |"
        )
    summary = section.get("summary") or {}
    med = {k: (v or {}).get("median") for k, v in summary.items() if isinstance(v, dict)}
    lines.append(
        f"| median | {_f(med.get('engine_tps'))} | {_f(med.get('client_tps'))} "
        f"| {_f(med.get('llama_bench_tps'))} | **{_f(med.get('engine_ratio'), 3)}** "
        f"| **{_f(med.get('client_ratio'), 3)}** | | |"
    )
    if summary.get("clean_pairs"):
        lines.append(
            f"| median of the {summary['clean_pairs']} clean pairs (others <= {CLEAN:.0%}) "
            f"| | | | **{_f(med.get('clean_engine_ratio'), 3)}** "
            f"| **{_f(med.get('clean_client_ratio'), 3)}** | | |"
        )
    if summary:
        met = "met" if summary.get("meets_goal") else "NOT met"
        lines.append(f"\nGoal ({section.get('goal')}): {met}.")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench decode", description=__doc__)
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    ap.add_argument("--pairs", type=int, default=5, help="interleaved pairs (default 5)")
    ap.add_argument("--n-predict", type=int, default=128, help="tokens per stream (tg size)")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: physical cores)")
    ap.add_argument("--no-build", action="store_true", help="fail if llama-bench is not built")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench import reference
    from bench.run import default_threads, model_path

    ns = parse_args(argv)
    ref = reference.find()
    if ref is None:
        if ns.no_build:
            raise SystemExit(
                "llama-bench is not built (python -c 'import bench.reference as r; r.build()')"
            )
        _log("building the llama.cpp reference (about 8 minutes on 2 cores)")
        ref = reference.build()
    result = run(
        model_path(ns.model),
        ref,
        pairs=max(1, ns.pairs),
        n_predict=ns.n_predict,
        threads=ns.threads or default_threads(),
    )
    if ns.json is not None:
        ns.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
