"""Time to first token with an image, against llama-server's own multimodal path.

    python -m bench vision [--repeat 5] [--threads N] [--json out.json]

Both servers get the same files (the tiny Gemma 3 of scripts/gen_tiny_vlm.py: its language
GGUF and its mmproj, an 896 x 896 SigLIP tower with Gemma 3's 256 image positions), the
same threads, one slot of 2048 positions, and the same requests on their OpenAI endpoints
(`/v1/chat/completions`, one token out, not streamed, so the time is the time to first
token plus one sample). Each round draws a NEW 896 x 896 PNG (so neither server has it
cached) and asks, on each server in turn (the order alternates between rounds):

1. a short question about the image: encoding + prompt evaluation;
2. a second, different question about the same image: what a chat's next turn costs.

Reported: the medians (min-max) of both (wall time, and for the first question the CPU
time the server processes or the in-process ceiling used: on a loaded machine the wall
time mostly measures the scheduler), ours / llama-server for the first question (goal
>= 0.95 in speed, i.e. a time ratio <= 1/0.95), and each server's second / first (goal
<= 0.3). An in-process ceiling (`ceiling`: mtmd's own helpers on this llama.cpp, no
server) runs the first question too, in the same rounds (the order rotates). The reference
llama-server is the one `python -m bench` builds from the llama-cpp-python sdist
(`bench.reference`).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench import reference
from bench.servers import Server, _launch, descendants, free_port, start_ours
from bench.stats import summarize

ROOT = Path(__file__).resolve().parents[1]
VISION = ROOT / "tests" / "testdata" / "vision"
MODEL, PROJECTOR = VISION / "gemma3.gguf", VISION / "gemma3-mmproj.gguf"
NUM_CTX = 2048
WARMUP = False
SIDE = 896
QUESTIONS = ("What is in this picture?", "Which colours does it use?")
TEMPLATE = (
    "{{- range .Messages }}<start_of_turn>"
    '{{ if eq .Role "user" }}user{{ else }}model{{ end }}\n'
    "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
)


def image(round_no: int) -> str:
    """A fresh 896 x 896 PNG for each round (base64), so no server has it cached."""
    rng = np.random.default_rng(round_no)
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    tint = rng.integers(0, 256, size=3)
    pixels = np.stack([(x + tint[0]) % 256, (y + tint[1]) % 256, (x + y + tint[2]) % 256], -1)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def ask(base: str, model: str, data: str, question: str) -> float:
    """Seconds until the one-token answer to `question` about the image is back."""
    body = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                    {"type": "text", "text": question},
                ],
            }
        ],
        "max_tokens": 1,
        "temperature": 0,
        "stream": False,
    }
    start = time.perf_counter()
    response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its live descendants: under a
    loaded machine's scheduling noise, the work a request cost."""
    total = 0
    for each in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def start_llama_server(ref: reference.Reference, threads: int, logdir: Path) -> Server:
    port = free_port()
    cmd = [str(ref.llama_server), "-m", str(MODEL), "--mmproj", str(PROJECTOR)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "-t", str(threads), "-tb", str(threads)]
    cmd += ["-np", "1", "-c", str(NUM_CTX), "--no-webui", "--no-mmproj-offload"]
    return _launch("llama-server", cmd, dict(os.environ), port, "/health", logdir, timeout=120)


def create_ours(server: Server, threads: int) -> str:
    modelfile = (
        f'FROM {MODEL}\nFROM {PROJECTOR}\nTEMPLATE """{TEMPLATE}"""\n'
        f"PARAMETER num_ctx {NUM_CTX}\nPARAMETER num_thread {threads}\n"
    )
    body = {"model": "tiny-vision", "modelfile": modelfile, "stream": False}
    httpx.post(f"{server.base_url}/api/create", json=body, timeout=300).raise_for_status()
    return "tiny-vision"


class Ceiling:
    """The first question done in-process with no server: mtmd decodes, lays out, encodes
    and evaluates (`mtmd_helper_eval_chunks`) on a cleared context; the same llama.cpp
    build as our runner, measured in the same rounds as the servers."""

    def __init__(self, threads: int) -> None:
        import llama_cpp as lc
        from llama_cpp import mtmd_cpp as mtmd

        self.lc, self.mtmd = lc, mtmd
        lc.llama_backend_init()
        params = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(MODEL).encode(), params)
        cparams = lc.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = NUM_CTX, 512, 512
        cparams.n_threads = cparams.n_threads_batch = threads
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        mparams = mtmd.mtmd_context_params_default()
        mparams.use_gpu, mparams.n_threads, mparams.print_timings = False, threads, False
        mparams.warmup = WARMUP
        self.vision = mtmd.mtmd_init_from_file(str(PROJECTOR).encode(), self.model, mparams)
        turn = f"<start_of_turn>user\n<__media__>{QUESTIONS[0]}<end_of_turn>\n"
        self.prompt = (turn + "<start_of_turn>model\n").encode()

    def ask(self, data_b64: str) -> float:
        """Seconds from the PNG's bytes to the logits after the prompt."""
        import ctypes

        lc, mtmd = self.lc, self.mtmd
        data = base64.b64decode(data_b64)
        start = time.perf_counter()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.vision, buf, len(data), False)
        chunks = mtmd.mtmd_input_chunks_init()
        text = mtmd.mtmd_input_text(self.prompt, len(self.prompt), True, True)
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd.mtmd_tokenize(self.vision, chunks, ctypes.byref(text), bitmaps, 1) == 0
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        n_past = lc.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunks(
            self.vision, self.ctx, chunks, 0, 0, 512, True, ctypes.byref(n_past)
        )
        elapsed = time.perf_counter() - start
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)
        assert rc == 0
        return elapsed

    def close(self) -> None:
        self.mtmd.mtmd_free(self.vision)
        self.lc.llama_free(self.ctx)
        self.lc.llama_model_free(self.model)


def run(repeat: int, threads: int) -> dict[str, Any]:
    ref = reference.find()
    if ref is None:
        raise SystemExit("llama-server not built: run `python -m bench` once (it builds it)")
    samples: dict[str, list[float]] = {
        f"{who}_{turn}": [] for who in ("ours", "llama") for turn in ("first", "second")
    }
    with tempfile.TemporaryDirectory(prefix="ollamapy-bench-vision-") as tmp:
        logdir = Path(tmp)
        (logdir / "models").mkdir()
        ours = start_ours(logdir / "models", 1, logdir)
        llama = start_llama_server(ref, threads, logdir)
        inproc = Ceiling(threads)
        samples["ceiling_first"], samples["ceiling_first_cpu"] = [], []
        samples["ours_first_cpu"], samples["llama_first_cpu"] = [], []
        pids = {"ours": ours.proc.pid, "llama": llama.proc.pid}
        try:
            name = create_ours(ours, threads)
            targets = {"ours": (ours.base_url, name), "llama": (llama.base_url, "tiny")}
            for who, (base, model) in targets.items():  # warm-up: load, first encode
                ask(base, model, image(10_000 + len(who)), QUESTIONS[0])
            inproc.ask(image(10_000))
            for round_no in range(repeat):
                order = [*targets, "ceiling"]
                order = order[round_no % 3 :] + order[: round_no % 3]  # rotate who goes first
                for who in order:
                    data = image(round_no)
                    if who == "ceiling":
                        cpu = time.process_time()
                        samples["ceiling_first"].append(inproc.ask(data))
                        samples["ceiling_first_cpu"].append(time.process_time() - cpu)
                        continue
                    base, model = targets[who]
                    cpu = cpu_seconds(pids[who])
                    samples[f"{who}_first"].append(ask(base, model, data, QUESTIONS[0]))
                    samples[f"{who}_first_cpu"].append(cpu_seconds(pids[who]) - cpu)
                    samples[f"{who}_second"].append(ask(base, model, data, QUESTIONS[1]))
        finally:
            inproc.close()
            ours.stop()
            llama.stop()
    summary = {key: summarize(values) for key, values in samples.items()}
    return {
        "vision": summary,
        "vision_config": {"threads": threads, "repeat": repeat, "llama_cpp": ref.version},
    }


def _median(result: dict[str, Any], key: str) -> float:
    return float(result["vision"][key]["median"])


def render(result: dict[str, Any]) -> str:
    def cell(key: str) -> str:
        s = result["vision"][key]
        return f"{s['median'] * 1000:.0f} ms ({s['min'] * 1000:.0f}-{s['max'] * 1000:.0f})"

    speed = _median(result, "llama_first") / _median(result, "ours_first")
    of_ceiling = _median(result, "ceiling_first") / _median(result, "ours_first")
    cpu_llama = _median(result, "llama_first_cpu") / _median(result, "ours_first_cpu")
    cpu_ceiling = _median(result, "ceiling_first_cpu") / _median(result, "ours_first_cpu")
    lines = [
        "| one 896x896 image, 1 token out | ours | llama-server | in-process ceiling "
        "| speed ours/llama | speed ours/ceiling |",
        "|---|---|---|---|---|---|",
        f"| first question (TTFT) | {cell('ours_first')} | {cell('llama_first')} "
        f"| {cell('ceiling_first')} | {speed:.2f} | {of_ceiling:.2f} |",
        f"| first question, CPU time | {cell('ours_first_cpu')} | {cell('llama_first_cpu')} "
        f"| {cell('ceiling_first_cpu')} | {cpu_llama:.2f} | {cpu_ceiling:.2f} |",
        f"| second question, same image | {cell('ours_second')} | {cell('llama_second')} | | | |",
        "| second / first | "
        f"{_median(result, 'ours_second') / _median(result, 'ours_first'):.2f} | "
        f"{_median(result, 'llama_second') / _median(result, 'llama_first'):.2f} | | | |",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench vision", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ns = ap.parse_args(argv)
    load = os.getloadavg()[0]
    result = run(max(1, ns.repeat), ns.threads)
    result["vision_config"]["load_avg"] = [load, os.getloadavg()[0]]
    print(render(result))
    print(f"\n1-minute load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end.")
    if ns.json is not None:
        ns.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
