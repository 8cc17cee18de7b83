"""The engine ceiling of the aggregate figure: the same round, in-process, ideally scheduled.

In the aggregate phase every server gets N prompts at once and returns `n_predict` tokens
for each. The least work llama.cpp can do for that round is one decode call holding all
the prompts, then one decode call per step holding the next token of every sequence,
sampled by the native sampler chain: no HTTP, no JSON, no request arriving late, no
Python between two steps beyond the sampler calls. `Ceiling.round` does exactly that in
the bench's own process, on the same model, context size, threads and sampling as the
servers, with the same prompts.

Its figure is what any server on this llama.cpp and this machine can reach, so a run can
say both how far each server is from it and how much room the ratio between two servers
has: a server at 0.9 of the ceiling can be beaten by at most 1.1x.
"""

from __future__ import annotations

import time
from pathlib import Path

from ollamapy.runner.native import Batch, Context, Model, SamplerChain, init_backend
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.types.options import SamplingOptions

GREEDY = SamplingOptions(temperature=0, repeat_penalty=1.0)
"""The servers' sampling in the bench (`bench.measure.SAMPLING`)."""


class Ceiling:
    """An in-process llama.cpp context with `n_seq` sequences of `num_ctx` tokens each,
    shaped like our runner's and llama-server's (one KV stream per sequence); `close()`
    frees it (`contextlib.closing` for a `with`)."""

    def __init__(
        self, model_path: Path, *, n_seq: int, num_ctx: int, threads: int, n_batch: int = 512
    ) -> None:
        init_backend()
        self._model = Model(str(model_path))
        try:
            self._ctx = Context(
                self._model,
                n_ctx_seq=num_ctx,
                n_seq_max=n_seq,
                n_batch=n_batch,
                n_threads=threads,
            )
        except BaseException:
            self._model.close()
            raise
        self._batch = Batch(max(n_batch, n_seq))

    def round(self, prompts: list[str], n_predict: int) -> tuple[int, float]:
        """Generate `n_predict` greedy tokens for every prompt (fewer where one ends);
        (tokens generated, seconds of wall time, tokenizing included)."""
        if len(prompts) > self._ctx.n_seq_max:
            raise ValueError(f"{len(prompts)} prompts for {self._ctx.n_seq_max} sequences")
        start = time.perf_counter()
        tokens = [self._model.tokenize(p, add_special=True) for p in prompts]
        self._ctx.seq_rm(-1, -1, -1)
        plan = plan_sampler_chain(GREEDY, n_vocab=self._model.n_vocab, n_ctx=self._ctx.n_ctx_seq)
        samplers = [SamplerChain(self._model, plan) for _ in prompts]
        try:
            generated = self._generate(tokens, samplers, n_predict)
        finally:
            for sampler in samplers:
                sampler.close()
        return generated, time.perf_counter() - start

    def _generate(
        self, tokens: list[list[int]], samplers: list[SamplerChain], n_predict: int
    ) -> int:
        """Prompts in as few decode calls as `n_batch` allows, then one call per step."""
        picks = self._evaluate_prompts(tokens, samplers)
        positions = [len(t) for t in tokens]
        counts = [0] * len(tokens)
        while picks:
            self._batch.clear()
            rows = {}
            for seq, token in picks.items():
                if self._model.is_eog(token):
                    continue
                counts[seq] += 1
                if counts[seq] < n_predict:
                    rows[seq] = self._batch.add(token, positions[seq], seq, True)
                    positions[seq] += 1
            if rows:
                self._decode()
            picks = {seq: samplers[seq].sample(self._ctx, row) for seq, row in rows.items()}
        return sum(counts)

    def _evaluate_prompts(
        self, tokens: list[list[int]], samplers: list[SamplerChain]
    ) -> dict[int, int]:
        """Decode every prompt, packed into batches of `n_batch` tokens; each sequence's
        first generated token, sampled right after the batch that ends its prompt."""
        batch, picks = self._batch, {}
        pending = dict.fromkeys(range(len(tokens)), 0)  # sequence -> prompt tokens done
        while pending:
            batch.clear()
            ending = {}
            for seq, done in list(pending.items()):
                chunk = tokens[seq][done : done + batch.room]
                if not chunk:
                    continue
                pending[seq] = done + len(chunk)
                end = pending[seq] == len(tokens[seq])
                index = batch.add_run(chunk, done, seq, end)
                if end:
                    ending[seq] = index
                    del pending[seq]
            self._decode()
            picks.update({seq: samplers[seq].sample(self._ctx, i) for seq, i in ending.items()})
        return picks

    def _decode(self) -> None:
        if self._ctx.decode(self._batch) != 0:
            raise RuntimeError("llama_decode failed")

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()
        self._model.close()
