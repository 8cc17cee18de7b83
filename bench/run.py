"""`python -m bench`: ollamapy against raw llama.cpp and llama-server on this machine.

    python -m bench [--quick] [--model smollm2] [--clients 1,2,4] [--repeat 3] [--no-reference]
                    [--overhead] [--decode]
    python -m bench overhead [...]   (bench.overhead: server overhead before the first token)
    python -m bench decode [...]     (bench.decode: streamed decode against llama-bench tg)
    python -m bench decode-parts [...]  (bench.decode_parts: decode's cost layer by layer)
    python -m bench agent-session [...]  (bench.agent_session: /v1/messages TTFT by turn)
    python -m bench vision [...]     (bench.vision: TTFT with an image vs llama-server)
    python -m bench speculate [...]  (bench.speculate: speculative decoding vs llama-server)
    python -m bench prompt-cache [...]  (bench.prompt_cache: TTFT with the host/disk prompt cache)

Writes bench/results/<date>-<host>.json and .md (plus PNG plots when matplotlib is
installed) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine, plots, reference, report, results
from bench.ceiling import Ceiling
from bench.measure import (
    Blocking,
    LlamaServer,
    Ours,
    Sample,
    concurrent,
    counting_prompt,
    long_text,
    numbers_for,
    shared_system_prompts,
)
from bench.servers import Server, start_llama_server, start_ours
from bench.stats import summarize

MODELS_DIR = Path.home() / ".cache" / "ollamapy" / "models"
MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick shrinks the prompt, the output and the client list."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="256-token prompt, 64 tokens out, no 8 clients"
    )
    ap.add_argument("--model", default="smollm2", help=f"{', '.join(MODELS)} or a GGUF path")
    ap.add_argument(
        "--clients", default=None, help="concurrent clients (default 1,2,4,8; quick 1,2,4)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="repeats of every figure (default 3)")
    ap.add_argument(
        "--threads", type=int, default=0, help="threads for every engine (default: cores)"
    )
    ap.add_argument("--num-ctx", type=int, default=2048, help="context per sequence (default 2048)")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="prompt size (default 512)")
    ap.add_argument("--n-predict", type=int, default=None, help="tokens generated (default 128)")
    ap.add_argument("--no-reference", action="store_true", help="skip llama-bench and llama-server")
    ap.add_argument("--no-build", action="store_true", help="do not build a missing reference")
    ap.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the in-process engine ceiling of the aggregate figure (bench.ceiling)",
    )
    ap.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    ap.add_argument(
        "--embeddings",
        action="store_true",
        help="also measure /api/embed against sentence-transformers (needs bench.embeddings' venv)",
    )
    ap.add_argument(
        "--pull", action="store_true", help="also measure pull against skopeo and a file copy"
    )
    ap.add_argument(
        "--overhead",
        action="store_true",
        help="also measure the server overhead before the first token (bench.overhead)",
    )
    ap.add_argument(
        "--decode",
        action="store_true",
        help="also measure streamed decode against llama-bench tg in pairs (bench.decode)",
    )
    ap.add_argument(
        "--cores",
        action="store_true",
        help="also measure the two bundled chat models generating at once (bench.cores)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    ns = ap.parse_args(argv)
    ns.clients = [int(c) for c in (ns.clients or ("1,2,4" if ns.quick else "1,2,4,8")).split(",")]
    ns.prompt_tokens = ns.prompt_tokens or (256 if ns.quick else 512)
    ns.n_predict = ns.n_predict or (64 if ns.quick else 128)
    ns.repeat = max(1, ns.repeat)
    return ns


def model_path(name: str) -> Path:
    """A bundled model's GGUF path, or the argument itself when it is a path."""
    path = MODELS_DIR / MODELS[name] if name in MODELS else Path(name).expanduser()
    if not path.is_file():
        raise SystemExit(f"model not found: {path} (run `python scripts/bundle_models.py fetch`)")
    return path.resolve()


def default_threads() -> int:
    """Physical cores (Ollama's default), falling back to the logical CPU count."""
    try:
        cores = machine.parse_cpuinfo(Path("/proc/cpuinfo").read_text())["physical_cores"]
    except OSError:
        cores = None

    return int(cores or os.cpu_count() or 1)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Prompts:
    """Counting prompts that never share a prefix with the previous one."""

    tokens_per_number: float = 5.0
    _starts: Iterator[int] = field(default_factory=lambda: itertools.count(1000, 97))

    def next(self, tokens: int) -> str:
        return counting_prompt(next(self._starts), numbers_for(tokens, self.tokens_per_number))

    def calibrate(self, measured_tokens: int | None, numbers: int) -> None:
        """Learn tokens per number from a request's prompt_eval_count (BOS included)."""
        if measured_tokens:
            self.tokens_per_number = max(measured_tokens - 1, 1) / numbers


@dataclass
class Run:
    """One bench run: settings, the two clients and the result being filled in."""

    ns: argparse.Namespace
    result: dict[str, Any]
    prompts: Prompts = field(default_factory=Prompts)
    ours: Ours | None = None
    ref: LlamaServer | None = None
    ceiling: Ceiling | None = None

    def note(self, text: str) -> None:
        log(text)
        self.result["notes"].append(text)

    def phase(self, name: str, fn: Callable[[], None]) -> None:
        """Run one measurement phase; a failure is noted and the run goes on."""
        log(f"measuring: {name}")
        try:
            fn()
        except Exception as exc:
            self.note(f"{name} failed: {type(exc).__name__}: {exc}"[:500])

    # -- phases ---------------------------------------------------------------------------

    def load_ceiling(self, model: Path) -> None:
        """The in-process context the aggregate phase measures the ceiling with."""
        ns = self.ns
        self.ceiling = Ceiling(model, n_seq=max(ns.clients), num_ctx=ns.num_ctx, threads=ns.threads)
        self.result["ceiling"] = {"aggregate_tps": {}}

    def raw_engine(self, ref: reference.Reference, model: Path) -> None:
        """llama-bench pp/tg with the same model and threads."""
        ns = self.ns
        self.result["raw"] = reference.run_llama_bench(
            ref, model, ns.threads, ns.prompt_tokens, ns.n_predict, ns.repeat
        )

    def warm_up(self) -> None:
        """Load the model in both servers and learn the prompt's tokens per number."""
        assert self.ours is not None
        numbers = 100
        s = self.ours.generate(counting_prompt(9000, numbers), 8)
        self.prompts.calibrate(s.prompt_tokens, numbers)
        if self.ref is not None:
            self.ref.generate(counting_prompt(9100, numbers), 8)

    def single_stream(self) -> None:
        """Same prompt to both servers, alternating, `repeat` times."""
        assert self.ours is not None
        ours: list[Sample] = []
        ref: list[Sample] = []
        for _ in range(self.ns.repeat):
            prompt = self.prompts.next(self.ns.prompt_tokens)
            ours.append(self.ours.generate(prompt, self.ns.n_predict))
            if self.ref is not None:
                ref.append(self.ref.generate(prompt, self.ns.n_predict))
        self._store_single("ours", ours)
        if self.ref is not None:
            self._store_single("llama_server", ref)

    def _store_single(self, side: str, samples: list[Sample]) -> None:
        target = self.result[side]
        target["prompt_eval_tps"] = summarize(s.prompt_eval_tps for s in samples)
        target["decode_tps"] = summarize(s.decode_tps for s in samples)
        target["ttft_s"] = summarize(s.ttft_s for s in samples)
        target["prompt_tokens"] = [s.prompt_tokens for s in samples]
        target["eval_tokens"] = [s.eval_tokens for s in samples]

    def aggregate(self) -> None:
        """Decode throughput with N concurrent clients: both servers, then the engine
        ceiling (`bench.ceiling`), on the same prompts, alternating per repeat."""
        assert self.ours is not None
        short = max(16, self.ns.prompt_tokens // 8)
        sides = [("ours", self.ours), ("llama_server", self.ref)]
        for n in self.ns.clients:
            walls: dict[str, list[float]] = {}
            sums: dict[str, list[float]] = {}
            generated: dict[str, int] = {}
            for _ in range(self.ns.repeat):
                prompts = [self.prompts.next(short) for _ in range(n)]
                for side, server in sides:
                    if server is None:
                        continue
                    wall, per_stream, samples = concurrent(
                        server.generate_blocking, prompts, self.ns.n_predict
                    )
                    walls.setdefault(side, []).append(wall)
                    sums.setdefault(side, []).append(per_stream)
                    generated[side] = generated.get(side, 0) + sum(
                        s.eval_tokens or 0 for s in samples
                    )
                if self.ceiling is not None:
                    tokens, seconds = self.ceiling.round(prompts, self.ns.n_predict)
                    walls.setdefault("ceiling", []).append(tokens / seconds)
                    generated["ceiling"] = generated.get("ceiling", 0) + tokens
            for side in walls:
                self.result[side]["aggregate_tps"][str(n)] = summarize(walls[side])
            for side in sums:
                self.result[side]["aggregate_sum_tps"][str(n)] = summarize(sums[side])
            if len(set(generated.values())) > 1:
                self.note(f"{n} clients: the engines generated different token counts {generated}")

    def aggregate_streamed(self) -> None:
        """As `aggregate` (no ceiling), with clients that stream, as chat UIs do: every
        token then crosses both our processes and the HTTP stream while others decode."""
        short = max(16, self.ns.prompt_tokens // 8)
        self._rounds(
            "aggregate_stream_tps",
            lambda n, _round: [self.prompts.next(short) for _ in range(n)],
            lambda server: server.generate_streamed,
            self.ns.n_predict,
        )

    def shared_prefix(self) -> None:
        """Aggregate t/s of N clients whose prompts share one system prompt (new every
        round), each server with its prompt cache on: how much of the shared prefix each
        evaluates once instead of N times."""
        system_tokens = self.ns.prompt_tokens // 2
        if self.ref is not None:
            self.ref.cache_prompt = True
        try:
            self._rounds(
                "shared_prefix_tps",
                lambda n, r: shared_system_prompts(9000 + 100 * n + r, system_tokens, n),
                lambda server: server.generate_blocking,
                self.ns.n_predict // 2,
            )
        finally:
            if self.ref is not None:
                self.ref.cache_prompt = False
        self.result["ours"]["shared_prefix_system_tokens"] = system_tokens

    def _rounds(
        self,
        key: str,
        make_prompts: Callable[[int, int], list[str]],
        call: Callable[[Ours | LlamaServer], Blocking],
        n_predict: int,
    ) -> None:
        """For each client count from 2, `repeat` rounds of concurrent clients, both
        servers on the same prompts (`make_prompts(clients, round)`); the wall-clock t/s
        summaries go under `key` per client count."""
        assert self.ours is not None
        servers: list[tuple[str, Ours | LlamaServer | None]] = [
            ("ours", self.ours),
            ("llama_server", self.ref),
        ]
        for n in (c for c in self.ns.clients if c >= 2):
            walls: dict[str, list[float]] = {}
            for r in range(self.ns.repeat):
                prompts = make_prompts(n, r)
                for side, server in servers:
                    if server is not None:
                        wall, _, _ = concurrent(call(server), prompts, n_predict)
                        walls.setdefault(side, []).append(wall)
            for side, values in walls.items():
                self.result[side].setdefault(key, {})[str(n)] = summarize(values)

    def prefix_cache(self) -> None:
        """TTFT of turn 1 vs turn 2 of a long chat (turn 2 reuses turn 1's prefix)."""
        assert self.ours is not None
        turn1, turn2 = [], []
        for r in range(self.ns.repeat):
            question = "Summarize the report above in one sentence."
            first = {"role": "user", "content": long_text(7000 + r, self.ns.prompt_tokens * 2)}
            messages = [{**first, "content": first["content"] + "\n\n" + question}]
            a = self.ours.chat(messages, 32)
            messages += [
                {"role": "assistant", "content": a.text},
                {"role": "user", "content": "Now give it a title."},
            ]
            b = self.ours.chat(messages, 32)
            turn1.append(a.ttft_s)
            turn2.append(b.ttft_s)
        self.result["ours"]["prefix_cache"] = {
            "turn1_ttft_s": summarize(turn1),
            "turn2_ttft_s": summarize(turn2),
            "turn1_tokens": self.ns.prompt_tokens * 2,
        }

    def cold_load(self) -> None:
        """`load_duration` of the first request after a `keep_alive: 0` unload."""
        assert self.ours is not None
        loads, ttfts = [], []
        for _ in range(self.ns.repeat):
            self.ours.unload()
            s = self.ours.generate(self.prompts.next(32), 4)
            loads.append(s.load_s)
            ttfts.append(s.ttft_s)
        self.result["ours"]["load_s"] = summarize(loads)
        self.result["ours"]["cold_ttft_s"] = summarize(ttfts)


def _peak_rss(run: Run, ours: Server | None, ref: Server | None) -> None:
    """Peak RSS (VmHWM) per process, sampled while the servers ran."""
    if ours is not None:
        sampler = ours.sampler
        runners = [
            v
            for pid, v in sorted(sampler.peaks.items())
            if pid != sampler.root and "ollamapy.runner" in sampler.labels.get(pid, "")
        ]
        run.result["ours"]["peak_rss_mib"] = {"server": sampler.root_peak(), "runners": runners}
    if ref is not None and run.result["llama_server"] is not None:
        run.result["llama_server"]["peak_rss_mib"] = {"server": ref.sampler.root_peak()}


def measure_servers(run: Run, model: Path, ref_bins: reference.Reference | None, tmp: Path) -> None:
    """Start both servers, run every server phase, stop them, record memory."""
    ns = run.ns
    ours_srv = ref_srv = None
    try:
        ours_srv = start_ours(tmp / "models", max(ns.clients), tmp)
        run.ours = Ours(ours_srv.base_url, "bench", ns.num_ctx, ns.threads)
        run.ours.create(str(model))
        if ref_bins is not None:
            ref_srv = start_llama_server(
                ref_bins, model, ns.threads, max(ns.clients), ns.num_ctx, tmp
            )
            run.ref = LlamaServer(ref_srv.base_url)
            run.result["llama_server"] = {
                "aggregate_tps": {},
                "aggregate_sum_tps": {},
                "load_s": summarize([ref_srv.startup_s]),
                "command": " ".join(str(a) for a in ref_srv.proc.args),  # type: ignore[union-attr]
            }
            run.note("llama-server load_s is process start to /health ready (one sample).")
        if not ns.no_ceiling:
            run.phase("engine ceiling: load", lambda: run.load_ceiling(model))
        run.phase("warm-up", run.warm_up)
        run.phase("single stream", run.single_stream)
        run.phase("aggregate", run.aggregate)
        run.phase("aggregate, streaming clients", run.aggregate_streamed)
        run.phase("prefix cache", run.prefix_cache)
        run.phase("shared system prompt", run.shared_prefix)
        run.phase("cold load", run.cold_load)
    finally:
        for client in (run.ours, run.ref, run.ceiling):
            if client is not None:
                client.close()
        for srv in (ours_srv, ref_srv):
            if srv is not None:
                srv.stop()
        _peak_rss(run, ours_srv, ref_srv)


def find_reference(ns: argparse.Namespace) -> reference.Reference | None:
    """The reference build (built now when missing, unless told not to)."""
    if ns.no_reference:
        return None
    found = reference.find()
    if found is None and not ns.no_build:
        log("building the llama.cpp reference (about 8 minutes on 2 cores)")
        found = reference.build()
    return found


def outputs(result: dict[str, Any], out: Path, want_plots: bool) -> list[Path]:
    """Write the JSON, the Markdown and the plots; return what was written."""
    stem = f"{result['created'][:10]}-{result['host']}"
    written = [results.write(result, out / f"{stem}.json")]
    md = out / f"{stem}.md"
    md.write_text(report.render(result), encoding="utf-8")
    written.append(md)
    if want_plots and plots.available():
        for fn, suffix in (
            (plots.throughput_vs_clients, "clients"),
            (plots.single_stream, "single"),
        ):
            path = fn(result, out / f"{stem}-{suffix}.png")
            if path is not None:
                written.append(path)
    return written


def extra_benchmarks(run: Run, model: Path, ref_bins: reference.Reference | None) -> None:
    """The opt-in comparisons, each with its own server, merged into the same results file."""
    from bench import cores, decode, embeddings, overhead, pull

    def decode_run(n: int) -> dict[str, Any]:
        if ref_bins is None:
            raise RuntimeError("needs llama-bench (the reference build)")
        return decode.run(model, ref_bins, pairs=max(5, n), threads=run.ns.threads)

    chosen: tuple[tuple[str, bool, Callable[[int], dict[str, Any]]], ...] = (
        (
            "embeddings_vs_sentence_transformers",
            run.ns.embeddings,
            lambda n: embeddings.run(runs=n),
        ),
        ("pull_vs_skopeo", run.ns.pull, lambda n: pull.run(repeat=n)),
        ("server_overhead", run.ns.overhead, lambda n: overhead.run(model, repeat=n)),
        ("decode_vs_llama_bench", run.ns.decode, decode_run),
        ("two_models_at_once", run.ns.cores, lambda n: cores.run(repeat=n)),
    )
    for name, wanted, measure in chosen:
        if not wanted:
            continue

        def merge(measure: Callable[[int], dict[str, Any]] = measure, name: str = name) -> None:
            run.result.update(measure(run.ns.repeat))
            run.result["not_measured"].pop(name, None)

        run.phase(name.replace("_", " "), merge)


COMMANDS = {
    "overhead": "overhead",
    "decode": "decode",
    "decode-parts": "decode_parts",
    "agent-session": "agent_session",
    "vision": "vision",
    "cores": "cores",
    "speculate": "speculate",
    "prompt-cache": "prompt_cache",
}
"""Sub-commands: `python -m bench <command> ...` runs that `bench` module's own CLI alone."""


def main(argv: list[str] | None = None) -> int:
    """Run the whole suite (or one sub-command) and print the Markdown table."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMMANDS:
        import importlib

        command: Callable[[list[str]], int] = importlib.import_module(
            f"bench.{COMMANDS[args[0]]}"
        ).main
        return command(list(args[1:]))
    ns = parse_args(args)
    ns.threads = ns.threads or default_threads()
    model = model_path(ns.model)
    ref_bins = find_reference(ns)
    version = ref_bins.version if ref_bins else f"llama-cpp-python {reference.binding_version()}"
    config = {k: v for k, v in vars(ns).items() if k != "out"}
    config["model_path"] = str(model)
    config["flash_attn"] = "llama.cpp default (auto) in all three engines"
    created = datetime.now().astimezone().isoformat(timespec="seconds")
    run = Run(ns, results.new_result(created, socket.gethostname(), machine.facts(version), config))
    if ns.no_reference:
        run.note("reference skipped (--no-reference): no llama-bench or llama-server figures.")
    elif ref_bins is None:
        run.note("reference not built (--no-build): no llama-bench or llama-server figures.")
    if ref_bins is not None:
        run.phase("raw engine (llama-bench)", lambda: run.raw_engine(ref_bins, model))
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-") as tmp:
        measure_servers(run, model, ref_bins, Path(tmp))
    extra_benchmarks(run, model, ref_bins)
    run.result["ratios"] = results.compute_ratios(run.result)
    start_load = run.result["machine"]["load_avg_at_start"][0]
    run.note(
        f"1-minute load average {start_load:.2f} at start, {os.getloadavg()[0]:.2f} at end "
        f"on {os.cpu_count()} logical CPUs (other jobs may share the machine)."
    )
    if not (ns.no_plots or plots.available()):
        run.note("plots skipped: matplotlib is not installed.")
    written = outputs(run.result, ns.out, not ns.no_plots)
    print(report.render(run.result))
    for path in written:
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
