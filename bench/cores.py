"""Two models generating at once on a CPU: do their runners share the cores?

    python -m bench cores [--repeat 3] [--window 15] [--json out.json]

Starts two of our servers side by side, one with `OLLAMA_SHARE_CORES=1` (the runners of
busy models share the cores) and one with `OLLAMA_SHARE_CORES=0` (every runner takes every
core, as before), each with its own store holding the two bundled chat models. In rounds
that alternate which server goes first, it measures on each server: each model decoding
alone (one client), then both at once (one client each). A client sends raw, greedy
`/api/generate` requests back to back for `window` seconds; its decode rate is the sum of
`eval_count` over the sum of `eval_duration` of the requests that ended inside the window
(so, for "together", only decoding done while the other model was busy counts).

The figures (issue 16): the sum over the models of (rate together / rate alone), goal
>= 0.9 (every core at work, nothing lost to fighting threads), and each model's rate alone
with sharing on / off, goal >= 0.97 (sharing costs a lone model nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.measure import SAMPLING, TIMEOUT, counting_prompt
from bench.servers import Server, start_ours

MODELS = ("smollm2", "gemma3")
"""The two bundled chat models (bench.run.MODELS names)."""
NUM_CTX = 1024
N_PREDICT = 64
GOAL_SUM = 0.9
GOAL_ALONE = 0.97
CONFIGS = {"on": "1", "off": "0"}
"""`OLLAMA_SHARE_CORES` of the two servers."""


def _log(msg: str) -> None:
    print(f"[bench.cores] {msg}", file=sys.stderr, flush=True)


def _body(model: str, n_predict: int) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": counting_prompt(1, 12),
        "raw": True,
        "stream": False,
        "keep_alive": "30m",
        "options": {**SAMPLING, "num_ctx": NUM_CTX, "num_predict": n_predict},
    }


def _client_loop(
    base: str, model: str, start: threading.Barrier, deadline: list[float], n_predict: int
) -> tuple[int, int]:
    """Requests back to back until the deadline; (tokens, ns) of those that ended before it."""
    tokens = nanos = 0
    with httpx.Client(timeout=TIMEOUT) as client:
        start.wait()
        while time.monotonic() < deadline[0]:
            reply = client.post(base + "/api/generate", json=_body(model, n_predict))
            reply.raise_for_status()
            if time.monotonic() <= deadline[0]:
                final = reply.json()
                tokens += int(final.get("eval_count", 0))
                nanos += int(final.get("eval_duration", 0))
    return tokens, nanos


def window(base: str, models: Sequence[str], seconds: float, n_predict: int) -> dict[str, float]:
    """Each model's decode rate (tokens/s) while all of `models` generate for `seconds`."""
    barrier = threading.Barrier(len(models) + 1)
    deadline = [0.0]
    results: dict[str, tuple[int, int]] = {}

    def one(model: str) -> None:
        results[model] = _client_loop(base, model, barrier, deadline, n_predict)

    threads = [threading.Thread(target=one, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    return {m: (t / (n / 1e9) if n else 0.0) for m, (t, n) in results.items()}


def _start(name: str, share: str, models_dir: Path, logdir: Path) -> Server:
    os.environ["OLLAMA_SHARE_CORES"] = share
    os.environ["OLLAMA_MAX_LOADED_MODELS"] = str(len(MODELS))
    try:
        server = start_ours(models_dir, 1, logdir)
    finally:
        del os.environ["OLLAMA_SHARE_CORES"], os.environ["OLLAMA_MAX_LOADED_MODELS"]
    server.name = name
    return server


def _create(server: Server, n_predict: int) -> None:
    from bench.run import model_path

    with httpx.Client(timeout=TIMEOUT) as client:
        for model in MODELS:
            body = {"model": model, "modelfile": f"FROM {model_path(model)}", "stream": False}
            client.post(server.base_url + "/api/create", json=body).raise_for_status()
            client.post(
                server.base_url + "/api/generate", json=_body(model, n_predict)
            ).raise_for_status()  # load and warm up


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(samples: dict[str, dict[str, dict[str, list[float]]]]) -> dict[str, Any]:
    """Medians per server and phase, the fractions and the two goals."""
    medians = {
        config: {
            phase: {m: _median(v) for m, v in per_model.items()}
            for phase, per_model in phases.items()
        }
        for config, phases in samples.items()
    }
    out: dict[str, Any] = {"median_tps": medians}
    for config, phases in medians.items():
        fractions = {
            m: (phases["together"][m] / phases["alone"][m] if phases["alone"][m] else 0.0)
            for m in MODELS
        }
        out[f"fractions_{config}"] = fractions
        out[f"sum_of_fractions_{config}"] = sum(fractions.values())
    alone_ratio = {
        m: (
            medians["on"]["alone"][m] / medians["off"]["alone"][m]
            if medians["off"]["alone"][m]
            else 0.0
        )
        for m in MODELS
    }
    out["alone_on_over_off"] = alone_ratio
    out["meets_goal"] = out["sum_of_fractions_on"] >= GOAL_SUM and all(
        r >= GOAL_ALONE for r in alone_ratio.values()
    )
    return out


def run(*, repeat: int = 3, seconds: float = 15.0, n_predict: int = N_PREDICT) -> dict[str, Any]:
    """Measure both servers in alternating rounds; the `cores` entry of the results JSON."""
    load_before = os.getloadavg()
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        c: {phase: {m: [] for m in MODELS} for phase in ("alone", "together")} for c in CONFIGS
    }
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-cores-") as tmp:
        servers: dict[str, Server] = {}
        try:
            for config, share in CONFIGS.items():
                logdir = Path(tmp) / f"log-{config}"
                logdir.mkdir()
                servers[config] = _start(f"ours-share-{config}", share, Path(tmp) / config, logdir)
                _log(f"server share={config} up; creating and loading {', '.join(MODELS)}")
                _create(servers[config], n_predict)
            for r in range(repeat):
                order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
                for config in order:
                    base = servers[config].base_url
                    for model in MODELS:
                        _log(f"round {r + 1} share={config}: {model} alone")
                        rate = window(base, [model], seconds, n_predict)[model]
                        samples[config]["alone"][model].append(rate)
                    both = window(base, MODELS, seconds, n_predict)
                    for model in MODELS:
                        samples[config]["together"][model].append(both[model])
                    _log(
                        f"round {r + 1} share={config}: alone "
                        + ", ".join(f"{m} {samples[config]['alone'][m][-1]:.1f}" for m in MODELS)
                        + "; together "
                        + ", ".join(f"{m} {both[m]:.1f}" for m in MODELS)
                        + f" tok/s (load {os.getloadavg()[0]:.1f})"
                    )
        finally:
            for server in servers.values():
                server.stop()
    return {
        "cores": {
            "models": list(MODELS),
            "repeat": repeat,
            "window_s": seconds,
            "n_predict": n_predict,
            "cpus": os.cpu_count(),
            "load_avg": {"start": list(load_before), "end": list(os.getloadavg())},
            "goal": f"sum of fractions >= {GOAL_SUM}, alone on/off >= {GOAL_ALONE}",
            "samples_tps": samples,
            **summarize(samples),
        }
    }


def render(result: dict[str, Any]) -> str:
    """A Markdown table of the medians and the two figures."""
    c = result["cores"]
    lines = [
        "| sharing | model | alone tok/s | together tok/s | fraction |",
        "|---|---|---:|---:|---:|",
    ]
    for config in CONFIGS:
        for m in MODELS:
            med = c["median_tps"][config]
            lines.append(
                f"| {config} | {m} | {med['alone'][m]:.1f} | {med['together'][m]:.1f} "
                f"| {c[f'fractions_{config}'][m]:.2f} |"
            )
    lines.append("")
    lines.append(
        f"sum of fractions: on {c['sum_of_fractions_on']:.2f}, off {c['sum_of_fractions_off']:.2f}"
        f" (goal >= {GOAL_SUM}); alone on/off: "
        + ", ".join(f"{m} {r:.3f}" for m, r in c["alone_on_over_off"].items())
        + f" (goal >= {GOAL_ALONE}); load average {c['load_avg']['start'][0]:.1f} at start, "
        f"{c['load_avg']['end'][0]:.1f} at end on {c['cpus']} CPUs; medians of {c['repeat']} "
        f"interleaved rounds of {c['window_s']:g} s windows."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench cores", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--window", type=float, default=15.0, help="seconds per figure (default 15)")
    ap.add_argument("--n-predict", type=int, default=N_PREDICT, help="tokens per request")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ns = ap.parse_args(argv)
    result = run(repeat=max(1, ns.repeat), seconds=ns.window, n_predict=ns.n_predict)
    if ns.json is not None:
        ns.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
