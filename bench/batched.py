"""`python -m bench.batched`: the raw engine's batched decode rate, with no server at all.

    python -m bench.batched [--model smollm2] [--seqs 1,4,8] [--steps 128] [--unified]

Loads the model through our native wrappers, fills every sequence with the same 64-token
prompt, then times `steps` decode calls of one token per sequence. This is the ceiling
for the aggregate-decode figure of `python -m bench` (what any server on this llama.cpp
can reach, before prompt evaluation and HTTP): compare a server's aggregate t/s with it.
`--unified` uses one KV cache for all sequences instead of one stream per sequence.
"""

from __future__ import annotations

import argparse
import time

from bench.run import MODELS, default_threads, model_path
from ollamapy.runner.native import Batch, Context, Model, init_backend

PROMPT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, " * 8
PROMPT_TOKENS = 64


def decode_rate(model: Model, n_seq: int, steps: int, threads: int, unified: bool) -> float:
    """Tokens per second of `steps` decode calls carrying one token for each sequence."""
    n_ctx = 2048
    with (
        Context(
            model,
            n_ctx_seq=n_ctx * n_seq if unified else n_ctx,
            n_seq_max=n_seq,
            n_batch=512,
            n_threads=threads,
            kv_unified=unified,
        ) as ctx,
        Batch(512) as batch,
    ):
        prompt = model.tokenize(PROMPT, add_special=True)[:PROMPT_TOKENS]
        for seq in range(n_seq):
            batch.clear()
            batch.add_run(prompt, 0, seq, True)
            if ctx.decode(batch) != 0:
                raise RuntimeError("prompt decode failed")
        start = time.perf_counter()
        for step in range(steps):
            batch.clear()
            for seq in range(n_seq):
                batch.add(prompt[step % len(prompt)], len(prompt) + step, seq, True)
            if ctx.decode(batch) != 0:
                raise RuntimeError("decode failed")
        return n_seq * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.batched", description=__doc__)
    ap.add_argument("--model", default="smollm2", help=f"{', '.join(MODELS)} or a GGUF path")
    ap.add_argument("--seqs", default="1,4,8", help="sequences decoded together")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="default: physical cores")
    ap.add_argument("--unified", action="store_true", help="one KV cache for all sequences")
    ns = ap.parse_args(argv)
    init_backend()
    threads = ns.threads or default_threads()
    with Model(str(model_path(ns.model))) as model:
        for n_seq in (int(s) for s in ns.seqs.split(",")):
            rate = decode_rate(model, n_seq, ns.steps, threads, ns.unified)
            print(f"{n_seq} sequences: {rate:.1f} t/s ({n_seq / rate * 1000:.1f} ms per step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
