"""Speculative decoding (prompt lookup): decode rate with drafts, without, and llama-server's.

    python -m bench speculate [--model smollm2] [--repeat 3] [--threads N]
                              [--ref-spec ngram-simple,ngram-mod] [--no-reference]
                              [--json out.json]

Two workloads, both greedy, one client, one slot in every server:

* **edit**: the prompt holds a ~400-token source file (`SOURCE`) and asks for it back with
  one identifier renamed; the answer copies the prompt, so drafts from it are accepted.
* **story**: a free-form story, with nothing to copy: drafting must cost (almost) nothing
  (goal: >= 0.97x our own decode without drafts).

Sides: ours with drafts (the default, `draft_max` 16), ours without (`draft_max` 0), and
llama-server built from the same llama.cpp with its default settings (no speculation,
what Ollama runs) and with each `--spec-type` in `--ref-spec` (its n-gram drafters).
Every side gets the same raw prompt (the model's chat template applied here) and the same
`num_predict`; the rate is the server's own decode rate (ours: `eval_count /
eval_duration`; llama-server: `timings.predicted_per_second`). The sides run in turn,
in an order that rotates every repeat, so a change in the machine's load hits all alike.
Our two sides must give the same text (checked and recorded as `same_text`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.measure import NS, TIMEOUT
from bench.reference import Reference
from bench.servers import Server, free_port, start_ours
from bench.stats import median, ratio, summarize

MODEL = "bench"
GOAL_STORY = 0.97
GOAL_EDIT_VS_DEFAULT = 1.8
GOAL_EDIT_VS_BEST = 1.0

SOURCE = '''import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Inventory:
    """Items in a warehouse, by name, with their count and price."""

    items: dict[str, int] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, count: int, price: float) -> None:
        if count <= 0:
            raise ValueError("count must be positive")
        self.items[name] = self.items.get(name, 0) + count
        self.prices[name] = price

    def remove(self, name: str, count: int) -> None:
        have = self.items.get(name, 0)
        if count > have:
            raise ValueError(f"only {have} of {name} in stock")
        self.items[name] = have - count
        if self.items[name] == 0:
            del self.items[name]
            del self.prices[name]

    def total_value(self) -> float:
        return sum(self.prices[name] * count for name, count in self.items.items())

    def cheapest(self) -> str | None:
        if not self.prices:
            return None
        return min(self.prices, key=lambda name: self.prices[name])

    def save(self, path: Path) -> None:
        data = {"items": self.items, "prices": self.prices}
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> "Inventory":
        data = json.loads(path.read_text())
        return cls(items=dict(data["items"]), prices=dict(data["prices"]))


def report(inventory: Inventory) -> str:
    lines = [f"{name}: {count} at {inventory.prices[name]:.2f}"
             for name, count in sorted(inventory.items.items())]
    lines.append(f"total: {inventory.total_value():.2f}")
    return "\\n".join(lines)
'''

EDIT = (
    "Here is a Python file:\n\n```python\n" + SOURCE + "```\n\n"
    "Rename the method `total_value` to `stock_value` everywhere and give me the whole "
    "file back, changing nothing else."
)
STORY = (
    "Write a long story about a lighthouse keeper who counts the ships that pass his "
    "island every night, and about the storm that changed his life."
)
TEMPLATES = {
    "smollm2": "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n",
    "gemma3": "<start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n",
}
ANSWER_START = {"edit": "```python\n", "story": ""}
"""Where the answer starts: the edit's opens its code block, as a chat model's would."""
N_PREDICT = {"edit": 560, "story": 256}


def prompt_text(model_key: str, workload: str) -> str:
    question = EDIT if workload == "edit" else STORY
    return TEMPLATES[model_key].format(q=question) + ANSWER_START[workload]


@dataclass(frozen=True)
class Sample:
    tps: float
    tokens: int
    text: str
    drafted: int = 0
    accepted: int = 0


Side = Callable[[str, int], Sample]
"""One server configuration: (raw prompt, n_predict) -> its decode."""


def ours(client: httpx.Client, base: str, draft_max: int) -> Side:
    def generate(prompt: str, n_predict: int) -> Sample:
        body = {
            "model": MODEL,
            "prompt": prompt,
            "raw": True,
            "stream": False,
            "options": {"temperature": 0, "num_predict": n_predict, "draft_max": draft_max},
        }
        resp = client.post(base + "/api/generate", json=body)
        resp.raise_for_status()
        done = resp.json()
        return Sample(
            done["eval_count"] / (done["eval_duration"] / NS),
            done["eval_count"],
            done["response"],
            done.get("draft_count", 0),
            done.get("draft_accepted_count", 0),
        )

    return generate


def llama_server(client: httpx.Client, base: str) -> Side:
    def generate(prompt: str, n_predict: int) -> Sample:
        body = {
            "prompt": prompt,
            "n_predict": n_predict,
            "temperature": 0,
            "cache_prompt": True,
            "seed": 0,
        }
        resp = client.post(base + "/completion", json=body)
        resp.raise_for_status()
        data = resp.json()
        timings = data.get("timings", {})
        return Sample(
            float(timings["predicted_per_second"]),
            int(timings.get("predicted_n", 0)),
            data.get("content", ""),
            int(timings.get("draft_n", 0)),
            int(timings.get("draft_n_accepted", 0)),
        )

    return generate


@contextlib.contextmanager
def started_llama_server(
    ref: Reference, model: Path, threads: int, num_ctx: int, extra: list[str], logdir: Path
) -> Iterator[Server]:
    from bench.servers import _launch

    port = free_port()
    cmd = [str(ref.llama_server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["-t", str(threads), "-tb", str(threads), "-np", "1", "-c", str(num_ctx)]
    cmd += ["--no-webui", *extra]
    name = "llama-server" + ("-" + "-".join(extra).replace("--", "") if extra else "")
    server = _launch(name, cmd, dict(os.environ), port, "/health", logdir, timeout=120)
    server.sampler.stop()
    try:
        yield server
    finally:
        server.stop()


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def measure(
    sides: dict[str, Side], prompts: dict[str, str], repeat: int
) -> dict[str, dict[str, list[Sample]]]:
    """Every side on every workload, `repeat` rounds; each round rotates the side order."""
    names = list(sides)
    out: dict[str, dict[str, list[Sample]]] = {w: {n: [] for n in names} for w in prompts}
    for workload, prompt in prompts.items():
        for name in names:  # warm-up: load, and cache the prompt
            sides[name](prompt, 4)
        for i in range(repeat):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                sample = sides[name](prompt, N_PREDICT[workload])
                out[workload][name].append(sample)
                _log(
                    f"{workload} round {i + 1} {name}: {sample.tps:.1f} t/s, "
                    f"{sample.tokens} tokens, drafted {sample.drafted} accepted {sample.accepted}"
                )
    return out


def summarize_runs(runs: dict[str, dict[str, list[Sample]]]) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for workload, by_side in runs.items():
        rows = {
            name: {
                "tps": summarize(s.tps for s in samples),
                "tokens": [s.tokens for s in samples],
                "drafted": sum(s.drafted for s in samples),
                "accepted": sum(s.accepted for s in samples),
            }
            for name, samples in by_side.items()
        }
        spec, plain = by_side.get("ours"), by_side.get("ours-no-drafts")
        same = bool(spec and plain) and {s.text for s in spec} == {s.text for s in plain}
        section[workload] = {"sides": rows, "same_text": same}
    return section


def run(
    model_path: Path,
    model_key: str,
    ref: Reference | None,
    *,
    repeat: int = 3,
    threads: int,
    ref_spec: list[str],
    num_ctx: int = 2048,
) -> dict[str, Any]:
    load_before = os.getloadavg()
    prompts = {w: prompt_text(model_key, w) for w in ("edit", "story")}
    with (
        tempfile.TemporaryDirectory(prefix="ollamapy-bench-spec-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        client = stack.enter_context(httpx.Client(timeout=TIMEOUT))
        server = start_ours(Path(tmp) / "models", 1, Path(tmp))
        stack.callback(server.stop)
        server.sampler.stop()
        modelfile = (
            f"FROM {model_path}\nPARAMETER num_ctx {num_ctx}\nPARAMETER num_thread {threads}"
        )
        body = {"model": MODEL, "modelfile": modelfile, "stream": False}
        client.post(server.base_url + "/api/create", json=body).raise_for_status()
        sides: dict[str, Side] = {
            "ours": ours(client, server.base_url, 16),
            "ours-no-drafts": ours(client, server.base_url, 0),
        }
        if ref is not None:
            variants = [("llama-server", [])] + [
                (f"llama-server --spec-type {t}", ["--spec-type", t]) for t in ref_spec
            ]
            for name, extra in variants:
                srv = stack.enter_context(
                    started_llama_server(ref, model_path, threads, num_ctx, extra, Path(tmp))
                )
                sides[name] = llama_server(client, srv.base_url)
        runs = measure(sides, prompts, repeat)
    section = summarize_runs(runs)
    section["ratios"] = ratios(section)
    section.update(
        model=str(model_path),
        threads=threads,
        repeat=repeat,
        n_predict=N_PREDICT,
        load_avg={"start": list(load_before), "end": list(os.getloadavg())},
        cpus=os.cpu_count(),
    )
    return {"speculate": section}


def _median_tps(section: dict[str, Any], workload: str, side: str) -> float | None:
    row = section.get(workload, {}).get("sides", {}).get(side)
    return None if row is None else median(row["tps"])


def ratios(section: dict[str, Any]) -> dict[str, float | None]:
    """The goal ratios: edit vs llama-server default and vs its best n-gram setting; story
    with drafts vs without."""
    ours_edit = _median_tps(section, "edit", "ours")
    ref_sides = [s for s in section.get("edit", {}).get("sides", {}) if s.startswith("llama")]
    spec_sides = [s for s in ref_sides if "--spec-type" in s]
    best = max((_median_tps(section, "edit", s) or 0.0 for s in spec_sides), default=None)
    return {
        "edit_vs_no_drafts": ratio(ours_edit, _median_tps(section, "edit", "ours-no-drafts")),
        "edit_vs_llama_server_default": ratio(
            ours_edit, _median_tps(section, "edit", "llama-server")
        ),
        "edit_vs_llama_server_best_ngram": ratio(ours_edit, best or None),
        "story_vs_no_drafts": ratio(
            _median_tps(section, "story", "ours"), _median_tps(section, "story", "ours-no-drafts")
        ),
    }


def _f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """Markdown: decode t/s per side and workload (median, min-max), then the ratios."""
    section = result["speculate"]
    lines = [
        "| workload | side | decode t/s (median, min–max) | drafted | accepted |",
        "| --- | --- | --- | --- | --- |",
    ]
    for workload in ("edit", "story"):
        for side, row in section[workload]["sides"].items():
            tps = row["tps"] or {}
            lines.append(
                f"| {workload} | {side} | {_f(tps.get('median'))} "
                f"({_f(tps.get('min'))}–{_f(tps.get('max'))}) "
                f"| {row['drafted']} | {row['accepted']} |"
            )
    r = section["ratios"]
    lines += [
        "",
        f"- edit, ours / ours without drafts: **{_f(r['edit_vs_no_drafts'], 2)}**",
        f"- edit, ours / llama-server default: **{_f(r['edit_vs_llama_server_default'], 2)}**"
        f" (goal >= {GOAL_EDIT_VS_DEFAULT})",
        f"- edit, ours / llama-server best n-gram: "
        f"**{_f(r['edit_vs_llama_server_best_ngram'], 2)}** (goal >= {GOAL_EDIT_VS_BEST})",
        f"- story, ours / ours without drafts: **{_f(r['story_vs_no_drafts'], 3)}**"
        f" (goal >= {GOAL_STORY})",
        f"- same text with and without drafts: edit {section['edit']['same_text']}, "
        f"story {section['story']['same_text']}",
        f"- load average {section['load_avg']['start'][0]:.2f} at start, "
        f"{section['load_avg']['end'][0]:.2f} at end, {section['cpus']} CPUs",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench import reference
    from bench.run import MODELS, default_threads, model_path

    ap = argparse.ArgumentParser(prog="python -m bench speculate", description=__doc__)
    ap.add_argument("--model", default="smollm2", help=f"{', '.join(MODELS)}")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ref-spec", default="ngram-simple,ngram-mod", help="llama-server types")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--edit-tokens", type=int, default=N_PREDICT["edit"], help="edit num_predict")
    ap.add_argument("--story-tokens", type=int, default=N_PREDICT["story"], help="story tokens")
    ns = ap.parse_args(argv)
    if ns.model not in TEMPLATES:
        raise SystemExit(f"--model must be one of {', '.join(TEMPLATES)}")
    ref = None if ns.no_reference else reference.find()
    if ref is None and not ns.no_reference:
        _log("no llama-server build found: measuring our side only")
    N_PREDICT.update(edit=ns.edit_tokens, story=ns.story_tokens)
    started = time.time()
    result = run(
        model_path(ns.model),
        ns.model,
        ref,
        repeat=max(1, ns.repeat),
        threads=ns.threads or default_threads(),
        ref_spec=[t for t in ns.ref_spec.split(",") if t],
    )
    result["speculate"]["wall_s"] = time.time() - started
    if ns.json:
        ns.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
