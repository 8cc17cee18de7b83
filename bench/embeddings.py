"""Embedding throughput: our `/api/embed` against sentence-transformers on the same CPU.

    python -m bench.embeddings [--runs 3] [--json out.json]

Starts our server (`python -m ollamapy serve`) on a free loopback port with a temporary
model store, creates `all-minilm` from the local all-MiniLM-L6-v2 Safetensors directory
through `/api/create`, and measures sentences per second for requests of 1, 32 and 256
short sentences (the median of `runs` timed runs after one warm-up run). In the same run,
sentence-transformers embeds the same sentences with `encode(batch_size=N)` in a separate
Python (the st-venv, see scripts/make_minilm_golden.py) as a subprocess. `run()` returns
a dict that the suite can merge into its results JSON; the CLI prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

CACHE = Path(os.environ.get("OLLAMAPY_CACHE", Path.home() / ".cache" / "ollamapy"))
MODEL_DIR = CACHE / "models" / "all-MiniLM-L6-v2"
ST_PYTHON = CACHE / "st-venv" / "bin" / "python"
MODEL = "all-minilm"
QUANTIZED = {"q8_0": "all-minilm:q8_0"}
"""Variants measured beside the default f16 import: `/api/create` with `quantize`."""
BATCH_SIZES = (1, 32, 256)
TARGET_RATIO_AT_32 = 1.5
SINGLE_COUNT = 64
"""Sentences one run embeds one request at a time (batch 1); larger batches run 256."""

_SUBJECTS = ["The cat", "A child", "My neighbour", "The old train", "A small robot", "Our team"]
_VERBS = ["watched", "painted", "repaired", "found", "carried", "described"]
_OBJECTS = ["the red door", "a quiet lake", "three apples", "the broken clock", "a paper map"]
_ENDINGS = ["at noon.", "yesterday.", "in the rain.", "with great care.", "before dinner."]


def short_sentences(count: int) -> list[str]:
    """`count` distinct short English sentences (8 to 12 word pieces), always the same."""
    out: list[str] = []
    for i in range(count):
        words: list[str] = []
        for choices in (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS):  # i in mixed radix
            i, digit = divmod(i, len(choices))
            words.append(choices[digit])
        out.append(" ".join(words))
    return out


def workload(batch: int, sentences: Sequence[str]) -> list[list[str]]:
    """The requests of one timed run at `batch` sentences per request."""
    total = list(sentences[:SINGLE_COUNT]) if batch == 1 else list(sentences)
    return [total[i : i + batch] for i in range(0, len(total), batch)]


# ------------------------------------------------------------------------------ our server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def our_server(model_dir: Path = MODEL_DIR) -> Iterator[str]:
    """Our server on a free port with a temporary store holding `all-minilm`; its URL."""
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-embed-") as tmp:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
        env |= {"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(Path(tmp) / "models")}
        log = (Path(tmp) / "server.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ollamapy", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc)
            created = httpx.post(
                f"{url}/api/create",
                json={"model": MODEL, "modelfile": f"FROM {model_dir}", "stream": False},
                timeout=600,
            )
            created.raise_for_status()
            yield url
        finally:
            _stop(proc)
            log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"our server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/version", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("our server did not start within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it stops its runners), then kill its own process group if needed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stray runners of the group we started


def create_quantized(url: str) -> None:
    """The QUANTIZED variants of MODEL, as a user makes them (`ollama create -q`)."""
    for quantize, name in QUANTIZED.items():
        created = httpx.post(
            f"{url}/api/create",
            json={"model": name, "from": MODEL, "quantize": quantize, "stream": False},
            timeout=600,
        )
        created.raise_for_status()


def measure_ours(
    url: str, sentences: Sequence[str], runs: int, model: str = MODEL
) -> dict[int, list[float]]:
    """Seconds per timed run of each batch size through `/api/embed` (after a warm-up)."""
    times: dict[int, list[float]] = {}
    with httpx.Client(base_url=url, timeout=600) as client:

        def one_run(batch: int) -> float:
            started = time.perf_counter()
            for inputs in workload(batch, sentences):
                response = client.post(
                    "/api/embed", json={"model": model, "input": inputs, "keep_alive": "10m"}
                )
                response.raise_for_status()
                if len(response.json()["embeddings"]) != len(inputs):
                    raise RuntimeError("wrong number of embeddings")
            return time.perf_counter() - started

        for batch in BATCH_SIZES:
            one_run(batch)  # warm: the model is loaded and the caches are hot
            times[batch] = [one_run(batch) for _ in range(runs)]
    return times


# ------------------------------------------------------------------- sentence-transformers

_ST_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sentence_transformers, torch
    from sentence_transformers import SentenceTransformer
    job = json.load(sys.stdin)
    model = SentenceTransformer(job["model_dir"], device="cpu")
    times = {}
    for batch, total in job["work"]:
        texts = job["sentences"][:total]
        model.encode(texts, batch_size=batch)  # warm-up
        runs = []
        for _ in range(job["runs"]):
            started = time.perf_counter()
            model.encode(texts, batch_size=batch)
            runs.append(time.perf_counter() - started)
        times[str(batch)] = runs
    print(json.dumps({
        "times": times,
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }))
    """
)


def measure_sentence_transformers(
    sentences: Sequence[str], runs: int, python: Path = ST_PYTHON, model_dir: Path = MODEL_DIR
) -> dict[str, Any]:
    """The same workloads with `SentenceTransformer.encode(batch_size=N)` in `python`."""
    work = [[b, sum(len(r) for r in workload(b, sentences))] for b in BATCH_SIZES]
    job = {"model_dir": str(model_dir), "sentences": list(sentences), "runs": runs, "work": work}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [str(python), "-c", _ST_SCRIPT],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sentence-transformers failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------- report


def run(runs: int = 3, model_dir: Path = MODEL_DIR, st_python: Path = ST_PYTHON) -> dict[str, Any]:
    """Measure both sides; `{"embeddings": {...}}` for the suite's results JSON."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    sentences = short_sentences(256)
    with our_server(model_dir) as url:
        create_quantized(url)
        ours = measure_ours(url, sentences, runs)
        variants = {q: measure_ours(url, sentences, runs, name) for q, name in QUANTIZED.items()}
    reference = measure_sentence_transformers(sentences, runs, st_python, model_dir)
    batches: dict[str, dict[str, float | int]] = {}
    for batch in BATCH_SIZES:
        count = sum(len(r) for r in workload(batch, sentences))
        ours_sps = count / statistics.median(ours[batch])
        st_sps = count / statistics.median(reference["times"][str(batch)])
        batches[str(batch)] = {
            "sentences": count,
            "ours_sentences_per_s": round(ours_sps, 1),
            "st_sentences_per_s": round(st_sps, 1),
            "ratio": round(ours_sps / st_sps, 3),
        }
        for quantize, times in variants.items():
            variant_sps = count / statistics.median(times[batch])
            batches[str(batch)][f"ours_{quantize}_sentences_per_s"] = round(variant_sps, 1)
            batches[str(batch)][f"{quantize}_ratio"] = round(variant_sps / st_sps, 3)
    return {
        "embeddings": {
            "model": "all-MiniLM-L6-v2",
            "runs": runs,
            "statistic": "median",
            "batches": batches,
            "quantized_variants": list(QUANTIZED),
            "target_ratio_at_32": TARGET_RATIO_AT_32,
            "meets_target": batches["32"]["ratio"] >= TARGET_RATIO_AT_32,
            "reference": {
                "sentence_transformers": reference["sentence_transformers"],
                "torch": reference["torch"],
                "torch_threads": reference["torch_threads"],
            },
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        }
    }


def table(result: dict[str, Any]) -> str:
    section = result["embeddings"]
    variants = section.get("quantized_variants", [])
    head = f"{'batch':>6} {'ours f16':>9} {'st':>7} {'f16/st':>7}"
    lines = [head + "".join(f" {'ours ' + q:>10} {q + '/st':>9}" for q in variants)]
    for batch, row in section["batches"].items():
        line = (
            f"{batch:>6} {row['ours_sentences_per_s']:>9.1f} "
            f"{row['st_sentences_per_s']:>7.1f} {row['ratio']:>6.2f}x"
        )
        for q in variants:
            line += f" {row[f'ours_{q}_sentences_per_s']:>10.1f} {row[f'{q}_ratio']:>8.2f}x"
        lines.append(line)
    ref = section["reference"]
    lines.append(
        f"sentences/s, median of {section['runs']} warm runs; sentence-transformers "
        f"{ref['sentence_transformers']}, torch {ref['torch']} ({ref['torch_threads']} threads); "
        f"target >= {section['target_ratio_at_32']}x at batch 32 (default f16 import): "
        f"{'met' if section['meets_target'] else 'NOT met'}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embeddings", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--st-python", type=Path, default=ST_PYTHON)
    parser.add_argument("--json", type=Path, default=None, help="also write the dict here")
    args = parser.parse_args(argv)
    result = run(args.runs, args.model_dir, args.st_python)
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
