"""The inference engine: one thread, N slots, continuous batching over one llama context.

Design (shaped after llama.cpp's server loop):

* The context holds `n_parallel` sequences of `n_ctx_seq` tokens each. Slot *i* owns
  sequence id *i*, its sampler chain, its stop/UTF-8 state and its token history.
* One engine thread loops: admit waiting jobs into idle slots, build ONE `llama_batch`
  with the next token of every generating slot plus chunks of pending prompts (up to
  `n_batch` tokens), call `llama_decode` once (the GIL is released), then sample per slot.
  New requests therefore join a running batch at the next step without waiting.
* Prefix cache: an idle slot keeps the tokens still in its KV cache. A new job goes to the
  idle slot with the longest common prefix; only the rest is evaluated (the last prompt
  token is always re-evaluated so there are logits to sample from).
* Context shift: a generating sequence that reaches `n_ctx_seq` keeps its first
  `num_keep` tokens and drops half of the rest, like Ollama (unless `num_predict` is -2,
  "fill the context", or the request said `shift: false`: those end with done_reason
  "length").
* Speculative decoding (`speculate.py`): a generating slot whose job allows drafts looks
  its context up for a continuation (prompt lookup) and appends up to its pacer's budget
  of drafted tokens behind its next token, every position with logits. After the decode
  the slot's own sampler samples the positions in order and stops at the first token
  that differs from the draft (`_verify`); the drafted tokens after it leave the KV cache
  (`seq_rm`), so the sequence continues exactly as if they had never been drafted.
* Logprobs (only for a job that asks): each sampled token's log-softmax entry waits in
  `Slot.logprobs` until its text has been emitted, and goes out on that chunk; a token
  whose text a stop string swallowed has no entry (see `_release_logprobs`).
* Results leave through `Job.emit`, a thread-safe callback supplied by the HTTP layer.
  A job is cancelled by setting `Job.cancelled`; its slot is freed before the next decode.
* `on_flush` is called once per step, just before `llama_decode`, and before the engine
  sleeps: the HTTP layer queues events in `emit` and wakes its event loop only there, so
  the loop's writing runs while the GIL is free during the decode instead of taking the
  GIL from the engine between two slots' sampling.

Per generated token the Python work is: one native sample call, one EOG check, a cached
piece lookup, incremental UTF-8 decoding, stop matching and one `emit`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ollamapy.runner.native import Batch, Context, Model, SamplerChain
from ollamapy.runner.prompt_cache import CacheSource, PromptCache
from ollamapy.runner.protocol import (
    CompletionChunk,
    CompletionDone,
    CompletionError,
    CompletionEvent,
    DoneReason,
)
from ollamapy.runner.sampling import token_logprob
from ollamapy.runner.speculate import DecodeCost, DraftPacer, NgramIndex
from ollamapy.runner.textstream import StopMatcher, TraceLimit, Utf8Decoder
from ollamapy.runner.vision import chunk_of, image_start, is_image
from ollamapy.types.logprobs import TokenLogprob
from ollamapy.types.options import SamplingOptions

log = logging.getLogger(__name__)

Emit = Callable[[CompletionEvent], None]


class ImageInput(Protocol):
    """An encoded image chunk the engine can evaluate (`runner.vision.ImageChunk`)."""

    n_tokens: int
    non_causal: bool

    def decode(self, ctx: Context, seq: int, pos: int, n_batch: int) -> None: ...


def min_copied_prefix(n_ctx: int) -> int:
    """Prompt tokens a copy of another slot's KV cache must save to be worth it.

    A copy moves that slot's whole KV stream: `n_ctx` tokens of K and V. Evaluating a
    prompt token costs about 2 FLOPs per weight, and KV bytes per token are a small, near
    constant fraction of the weights across model sizes, so the break-even point grows with
    `n_ctx` and with the FLOPs-to-bandwidth ratio: a few tokens at 2048 on a CPU, tens at
    32k on a GPU. The floor of 16 and the 1/256 slope stay above both.
    """
    return max(16, n_ctx // 256)


class EngineClosedError(RuntimeError):
    """The engine is shutting down and takes no more work."""


@dataclass(eq=False)
class Job:
    """One completion request: its tokenized prompt, options, sampler and output channel.

    The job owns `sampler` until it is handed to a slot; the engine frees it when the job
    ends (finished, failed, cancelled or dropped at shutdown).
    """

    prompt: list[int]
    options: SamplingOptions
    sampler: SamplerChain
    emit: Emit
    cancelled: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    shift: bool = True
    trace: TraceLimit | None = None
    """A reasoning-trace budget; when it is spent, `trace_close` is written for the model."""
    trace_close: tuple[int, ...] = ()
    started_ns: int = 0
    """When preparing the prompt began (`time.perf_counter_ns`), if before the engine got
    it: encoding its images counts in the prompt's evaluation time."""
    images: Mapping[int, ImageInput] = field(default_factory=dict)
    """The image chunks whose positions (negative ids, see `runner.vision`) the prompt
    holds, by chunk id."""
    drafter: NgramIndex | None = None
    """The prompt's n-gram index when the job may draft (speculative decoding), built
    before the job is queued so the engine thread does not index long prompts."""
    draft_max: int = 0
    """Most tokens drafted per step (0: no speculative decoding)."""

    def cancel(self) -> None:
        """Ask the engine to stop this job (safe from any thread; acted on next step)."""
        self.cancelled = True


@dataclass(eq=False)
class Slot:
    """The per-sequence state of the engine."""

    seq: int
    cache: list[int] = field(default_factory=list)  # tokens whose KV is in memory, by pos
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens not evaluated yet
    next_token: int | None = None  # sampled, not yet decoded
    last_used: int = 0
    # per-job state
    prompt: list[int] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    num_keep: int = 0
    num_predict: int = -1
    decoder: Utf8Decoder = field(default_factory=Utf8Decoder)
    stops: StopMatcher = field(default_factory=lambda: StopMatcher(()))
    forced: list[int] = field(default_factory=list)  # tokens to write instead of sampling
    prompt_cached_count: int = 0  # prompt tokens whose KV was reused, not evaluated
    prompt_cached_source: CacheSource = ""
    t_prompt_start: int = 0
    t_prompt_end: int = 0
    # logprobs: entries not sent yet, with the [start, end) of their token's text in the
    # decoded text; `decoded` and `emitted` count characters decoded and sent so far.
    logprobs: collections.deque[tuple[TokenLogprob, int, int]] = field(
        default_factory=collections.deque
    )
    decoded: int = 0
    emitted: int = 0
    # speculative decoding: the job's drafter has seen `indexed` of the generated tokens
    pacer: DraftPacer = field(default_factory=lambda: DraftPacer(0))
    indexed: int = 0

    @property
    def busy(self) -> bool:
        return self.job is not None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _text_run(pending: list[int], room: int) -> list[int]:
    """The text tokens at the front of `pending`, up to `room` and the next image."""
    run = pending[:room]
    for i, token in enumerate(run):
        if is_image(token):
            return run[:i]
    return run


def fit_prompt(prompt: list[int], num_keep: int, n_ctx: int) -> list[int]:
    """Drop tokens after the first `num_keep` so a too-long prompt fits, like Ollama."""
    if len(prompt) <= n_ctx:
        return prompt
    discard = len(prompt) - n_ctx
    log.warning("truncating input prompt: limit=%d prompt=%d keep=%d", n_ctx, len(prompt), num_keep)
    return prompt[:num_keep] + prompt[num_keep + discard :]


def effective_num_keep(num_keep: int, prompt_len: int, n_ctx: int) -> int:
    """Ollama's rule: -1 or too many means the whole prompt; always leave 1 to discard."""
    if num_keep < 0 or num_keep > prompt_len:
        num_keep = prompt_len
    return max(0, min(num_keep, n_ctx - 1))


class Engine:
    """Runs every completion of one model on a single thread with continuous batching."""

    def __init__(
        self,
        model: Model,
        ctx: Context,
        *,
        n_batch: int,
        on_flush: Callable[[], None] | None = None,
        draft_cost: DecodeCost | None = None,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        """`draft_cost`: what one more token in a decode costs, as a share of a one-token
        decode, learned from the decodes (see `speculate.DecodeCost`)."""
        self._model = model
        self._draft_cost = draft_cost or DecodeCost()
        self._cache = prompt_cache
        self._on_flush = on_flush
        self._ctx = ctx
        self._n_ctx = ctx.n_ctx_seq
        self._min_copy = min_copied_prefix(ctx.n_ctx_seq)
        self._slots = [Slot(seq) for seq in range(ctx.n_seq_max)]
        self._batch = Batch(max(min(n_batch, ctx.n_batch), ctx.n_seq_max))
        self._queue: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._clock = 0
        self._thread = threading.Thread(target=self._run, name="ollamapy-engine", daemon=True)

    # public API -------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; it starts at the next engine step if a slot is free."""
        if not job.prompt:
            raise ValueError("a job needs at least one prompt token")
        with self._wake:
            if self._closing:
                raise EngineClosedError("the runner is shutting down")
            self._queue.append(job)
            self._wake.notify()

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the thread, fail unfinished jobs and free the batch (not model/context).

        Returns False if the thread is still running after `timeout` (a decode that never
        returns); the caller must then NOT free the context under it.
        """
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._batch.close()
        return True

    # the loop ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._next_step():
                pass
        except Exception:  # a bug in the loop: fail everything rather than hang clients
            log.exception("engine loop crashed")
            self._fail_all("internal error in the inference engine")
        finally:
            self._fail_all("the runner is shutting down")
            self._flush()

    def _next_step(self) -> bool:
        """Do one decode step (or wait for work); False once the engine is closing."""
        with self._wake:
            while True:
                if self._closing:
                    return False
                self._reap_cancelled()
                self._admit()
                if any(slot.busy for slot in self._slots):
                    break
                self._flush()
                self._wake.wait()
        try:
            self._step()
        except Exception as exc:
            log.exception("decode step failed")
            self._fail_active(f"inference failed: {exc}")
            self._flush()
        return True

    def _flush(self) -> None:
        if self._on_flush is not None:
            try:
                self._on_flush()
            except Exception:  # the receiving side is gone; its jobs get cancelled
                log.debug("could not hand events over", exc_info=True)

    def _reap_cancelled(self) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.cancelled:
                self._release(slot)
        if any(job.cancelled for job in self._queue):
            for job in [j for j in self._queue if j.cancelled]:
                self._queue.remove(job)
                job.sampler.close()

    def _admit(self) -> None:
        """Start queued jobs in idle slots, in order; a job whose prompt shares a long
        prefix with a prompt another slot is still evaluating waits until that prefix
        is cached, then copies it (see `_start`) instead of evaluating it again."""
        waiting: list[Job] = []
        while self._queue:
            idle = [slot for slot in self._slots if not slot.busy]
            if not idle:
                break
            job = self._queue.popleft()
            cached = {slot.seq: common_prefix(slot.cache, job.prompt) for slot in self._slots}
            if self._prefix_coming(job.prompt, max(cached.values())):
                waiting.append(job)
                continue
            slot = max(idle, key=lambda s: (cached[s.seq], -s.last_used))
            self._start(slot, job)
        self._queue.extendleft(reversed(waiting))

    def _prefix_coming(self, prompt: list[int], cached: int) -> bool:
        """True if a busy slot is evaluating a prompt that shares at least
        `min_copied_prefix` more tokens with `prompt` than the `cached` tokens any cache
        already holds."""
        return any(
            slot.busy
            and slot.pending
            and common_prefix(slot.prompt, prompt) >= max(cached, len(slot.cache)) + self._min_copy
            for slot in self._slots
        )

    def _start(self, slot: Slot, job: Job) -> None:
        options = job.options
        num_keep = effective_num_keep(options.num_keep, len(job.prompt), self._n_ctx)
        prompt = fit_prompt(job.prompt, num_keep, self._n_ctx)
        reuse = min(common_prefix(slot.cache, prompt), len(prompt) - 1) if self._intact(slot) else 0
        reuse = image_start(prompt, reuse)
        donor, shared = self._best_donor(slot, prompt)
        source: CacheSource = "slot"
        if self._cache is not None:
            restored = self._from_prompt_cache(slot, prompt, reuse, max(reuse, shared))
            if restored is not None:
                reuse, source = restored
                donor = donor if source == "slot" else None
        if donor is not None and shared >= reuse + self._min_copy:
            self._copy_prefix(donor, slot, shared)
            reuse = shared
        elif reuse < len(slot.cache) and not self._ctx.seq_rm(slot.seq, reuse, -1):
            self._ctx.seq_rm(slot.seq, -1, -1)
            reuse = 0
        del slot.cache[reuse:]
        self._clock += 1
        slot.job, slot.last_used = job, self._clock
        slot.pending = prompt[reuse:]
        slot.next_token = None
        slot.prompt, slot.generated = prompt, []
        slot.num_keep, slot.num_predict = num_keep, options.num_predict
        slot.decoder = Utf8Decoder()
        slot.stops = StopMatcher(options.stop)
        slot.forced = []
        slot.prompt_cached_count = reuse
        slot.prompt_cached_source = source if reuse else ""
        slot.t_prompt_start, slot.t_prompt_end = job.started_ns, 0
        slot.logprobs.clear()
        slot.decoded = slot.emitted = 0
        slot.pacer = DraftPacer(job.draft_max if job.drafter is not None else 0)
        slot.indexed = 0

    def _from_prompt_cache(
        self, slot: Slot, prompt: list[int], reuse: int, best: int
    ) -> tuple[int, CacheSource] | None:
        """Stash the slot's cache in the prompt cache if this job would lose much of it,
        then restore the cached prefix of `prompt` when it beats the `best` the slots
        offer; the tokens reused and their source, or None to use the slots."""
        assert self._cache is not None
        if len(slot.cache) - reuse >= self._min_copy and self._intact(slot):
            self._cache.stash(slot.seq, slot.cache)
        entry, stored = self._cache.find(prompt)
        stored = min(stored, len(prompt) - 1)
        if entry is None or stored < best + self._min_copy:
            return None
        source = entry.source
        if not self._cache.restore(slot.seq, entry, stored):
            slot.cache.clear()
            return 0, "slot"
        slot.cache[:] = entry.tokens[:stored]
        log.debug("prompt cache: seq %d restored %d tokens from %s", slot.seq, stored, source)
        return stored, source

    def save_prompt_cache(self) -> int:
        """Write the prompt cache to disk (after `close`, from the closing thread): the
        slots' caches first, most recently used first; the number of files written."""
        if self._cache is None or self._thread.is_alive():
            return 0
        slots = sorted(self._slots, key=lambda s: -s.last_used)
        return self._cache.persist((s.seq, s.cache) for s in slots if s.cache and self._intact(s))

    def _best_donor(self, slot: Slot, prompt: list[int]) -> tuple[Slot | None, int]:
        """The other slot whose cache shares the longest prefix with `prompt`, busy or
        not, and how many tokens of it a copy would reuse (never the whole prompt: its
        last token must be evaluated to sample from)."""
        shared = {
            other.seq: common_prefix(other.cache, prompt)
            for other in self._slots
            if other is not slot and other.cache and self._intact(other)
        }
        if not shared:
            return None, 0
        seq = max(shared, key=shared.__getitem__)
        return self._slots[seq], image_start(prompt, min(shared[seq], len(prompt) - 1))

    def _intact(self, slot: Slot) -> bool:
        """Whether the slot's KV still holds its cache from position 0: a sliding-window
        cache may reuse the cells of old positions, and then no prefix of it is reusable,
        in the slot itself or copied to another."""
        return self._ctx.seq_pos_min(slot.seq) <= 0

    def _copy_prefix(self, donor: Slot, slot: Slot, length: int) -> None:
        """Make `slot`'s cache the first `length` tokens of `donor`'s, by copying KV."""
        self._ctx.seq_rm(slot.seq, -1, -1)
        self._ctx.seq_cp(donor.seq, slot.seq)
        self._ctx.seq_rm(slot.seq, length, -1)
        slot.cache[:] = donor.cache[:length]
        log.debug("prefix copy: seq %d -> %d, %d tokens", donor.seq, slot.seq, length)

    def _step(self) -> None:
        """Build one batch from every busy slot, decode it, then sample per slot."""
        batch = self._batch
        batch.clear()
        outputs: list[tuple[Slot, int, list[int]]] = []
        generating = [
            slot
            for slot in self._slots
            if slot.job is not None and slot.next_token is not None and self._make_room(slot)
        ]
        for n, slot in enumerate(generating):
            assert slot.next_token is not None
            # every later generating slot still needs a place for its next token
            draft = self._draft(slot, batch.room - (len(generating) - n))
            pos = len(slot.cache)
            index = batch.add(slot.next_token, pos, slot.seq, True)
            slot.cache.append(slot.next_token)
            slot.next_token = None
            if draft:
                batch.add_outputs(draft, pos + 1, slot.seq)
                slot.cache.extend(draft)
            outputs.append((slot, index, draft))
        generation_only = True
        for slot in self._slots:
            if slot.job is None or not slot.pending:
                continue
            generation_only = False
            if not slot.t_prompt_start:
                slot.t_prompt_start = time.perf_counter_ns()
            if is_image(slot.pending[0]):
                self._decode_image(slot, slot.job)
            if batch.room == 0 or not slot.pending:
                continue
            chunk = _text_run(slot.pending, batch.room)
            if not chunk:  # another image next: the next step evaluates it
                continue
            del slot.pending[: len(chunk)]
            done = not slot.pending
            index = batch.add_run(chunk, len(slot.cache), slot.seq, done)
            slot.cache.extend(chunk)
            if done:
                outputs.append((slot, index, []))
        if batch.n_tokens == 0:
            return
        self._flush()
        started = time.perf_counter_ns()
        rc = self._ctx.decode(batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        now = time.perf_counter_ns()
        if generation_only:
            self._draft_cost.add(batch.n_tokens, (now - started) / 1e9)
        for slot, index, draft in outputs:
            if slot.job is None:
                continue
            if not slot.t_prompt_end:
                slot.t_prompt_end = now
            if draft:
                self._verify(slot, index, draft)
            else:
                token = self._next_token(slot, index)
                self._accept(slot, token, self._logprob(slot.job, index, token))

    def _next_token(self, slot: Slot, index: int) -> int:
        """The sampled token, or the next one the engine writes itself (a trace's closing
        tag once its budget is spent)."""
        job = slot.job
        assert job is not None
        if slot.forced:
            token = slot.forced.pop(0)
            job.sampler.accept(token)
            return token
        return job.sampler.sample(self._ctx, index)

    def _decode_image(self, slot: Slot, job: Job) -> None:
        """Evaluate the image chunk at the front of the slot's pending prompt, whole (its
        own decode: a batch holds token ids or embeddings, never both)."""
        image = job.images[chunk_of(slot.pending[0])[0]]
        image.decode(self._ctx, slot.seq, len(slot.cache), self._ctx.n_batch)
        slot.cache.extend(slot.pending[: image.n_tokens])
        del slot.pending[: image.n_tokens]

    def _draft(self, slot: Slot, room: int) -> list[int]:
        """The tokens to decode after the slot's next token (speculative decoding): a
        continuation found in its context, no longer than its pacer allows, the batch's
        `room`, the context or `num_predict` leave (the decode yields one more token)."""
        job = slot.job
        if job is None or job.drafter is None or job.trace is not None or slot.forced:
            return []  # a trace budget may force tokens: those steps are not drafted
        slot.pacer.cost = self._draft_cost.share
        limit = min(slot.pacer.budget(), room, self._n_ctx - len(slot.cache) - 1)
        if slot.num_predict > 0:
            limit = min(limit, slot.num_predict - len(slot.generated) - 1)
        if limit <= 0:
            return []
        job.drafter.extend(slot.generated[slot.indexed :])
        slot.indexed = len(slot.generated)
        return job.drafter.draft(limit)

    def _verify(self, slot: Slot, index: int, draft: list[int]) -> None:
        """Sample the positions of the next token and its draft in order with the job's
        sampler, up to the first sampled token that is not the drafted one; drop the KV
        of the drafted tokens after it; then handle the sampled tokens as usual.

        Each sampler call sees the logits of the same context, and the chain the same
        history, as without the draft: greedy output is identical, sampled output comes
        from the same distribution (the rejection rule for a one-token draft)."""
        job = slot.job
        assert job is not None
        sampled: list[tuple[int, TokenLogprob | None]] = []
        for offset in range(len(draft) + 1):
            token = job.sampler.sample(self._ctx, index + offset)
            sampled.append((token, self._logprob(job, index + offset, token)))
            if offset == len(draft) or token != draft[offset]:
                break
        accepted = len(sampled) - 1
        slot.pacer.record(len(draft), accepted)
        if accepted < len(draft):
            keep = len(slot.cache) - (len(draft) - accepted)
            self._ctx.seq_rm(slot.seq, keep, -1)
            del slot.cache[keep:]
        for token, logprob in sampled:
            self._accept(slot, token, logprob)
            if slot.job is None:
                break

    def _make_room(self, slot: Slot) -> bool:
        """Ensure the slot's sequence can take one more token; False if it had to finish."""
        if len(slot.cache) < self._n_ctx:
            return True
        keep = min(slot.num_keep, len(slot.cache))
        discard = (len(slot.cache) - keep) // 2
        shift = slot.job is None or slot.job.shift
        if slot.num_predict == -2 or not shift or not self._ctx.can_shift or discard <= 0:
            self._finish(slot, "length")
            return False
        self._ctx.seq_rm(slot.seq, keep, keep + discard)
        self._ctx.seq_add(slot.seq, keep + discard, len(slot.cache), -discard)
        del slot.cache[keep : keep + discard]
        log.debug("context shift: seq=%d keep=%d discard=%d", slot.seq, keep, discard)
        return True

    def _logprob(self, job: Job, index: int, token: int) -> TokenLogprob | None:
        """The token's logprob entry when the job asked for them (else no work at all);
        an end-of-generation token has none (it is never emitted)."""
        if not job.logprobs or self._model.is_eog(token):
            return None
        logits = self._ctx.logits(index, self._model.n_vocab)
        return token_logprob(logits, token, job.top_logprobs, self._model.piece)

    def _accept(self, slot: Slot, token: int, logprob: TokenLogprob | None = None) -> None:
        """Handle one sampled token: EOG, text (UTF-8 + stop strings), num_predict."""
        model = self._model
        if model.is_eog(token):
            self._finish(slot, "stop")
            return
        slot.generated.append(token)
        text = slot.decoder.feed(model.piece(token))
        job = slot.job
        if job is not None and job.trace is not None and job.trace.feed(text):
            slot.forced = list(job.trace_close)
        if logprob is not None:
            start = slot.decoded
            slot.decoded += len(text)
            # A token that ends inside a character is complete once that character is.
            slot.logprobs.append((logprob, start, slot.decoded + slot.decoder.pending))
        if text:
            out, stopped = slot.stops.feed(text)
            if stopped:
                self._send(slot, out, cut=True)
                self._finish(slot, "stop", flush=False)
                return
            self._send(slot, out)
        elif logprob is not None:
            self._send(slot, "")
        if 0 < slot.num_predict <= len(slot.generated):
            self._finish(slot, "length")
            return
        slot.next_token = token

    def _send(self, slot: Slot, text: str, *, cut: bool = False, end: bool = False) -> None:
        """Emit `text` with the logprob entries of the tokens it completes (nothing when
        both are empty)."""
        slot.emitted += len(text)
        logprobs = self._release_logprobs(slot, cut=cut, end=end)
        if text or logprobs:
            self._emit(slot, CompletionChunk(text, logprobs))

    def _release_logprobs(self, slot: Slot, *, cut: bool, end: bool) -> tuple[TokenLogprob, ...]:
        """The queued entries whose text is now all sent; at the `end` of the text, all
        of them; when a stop string `cut` the text, those whose text began before the cut
        (a token partly sent keeps its entry, as in Ollama) and none after it."""
        queue = slot.logprobs
        if end:
            released = [entry for entry, _, _ in queue]
            queue.clear()
        elif cut:
            released = [entry for entry, start, _ in queue if start < slot.emitted]
            queue.clear()
        else:
            released = []
            while queue and queue[0][2] <= slot.emitted:
                released.append(queue.popleft()[0])
        return tuple(released)

    def _finish(self, slot: Slot, reason: DoneReason, *, flush: bool = True) -> None:
        if flush:
            out, stopped = slot.stops.feed(slot.decoder.flush())
            out += "" if stopped else slot.stops.flush()
            self._send(slot, out, cut=stopped, end=not stopped)
        now = time.perf_counter_ns()
        end_prompt = slot.t_prompt_end or now
        done = CompletionDone(
            done_reason=reason,
            prompt_eval_count=len(slot.prompt),
            prompt_eval_duration=max(end_prompt - slot.t_prompt_start, 0),
            eval_count=len(slot.generated),
            eval_duration=max(now - end_prompt, 0),
            tokens=[t for t in slot.prompt if not is_image(t)] + slot.generated,
            prompt_cached_count=slot.prompt_cached_count,
            prompt_cached_source=slot.prompt_cached_source,
            stop_sequence=slot.stops.matched,
            draft_count=slot.pacer.drafted,
            draft_accepted_count=slot.pacer.accepted,
        )
        self._emit(slot, done)
        self._release(slot)

    def _emit(self, slot: Slot, event: CompletionEvent) -> None:
        job = slot.job
        if job is None or job.cancelled:
            return
        try:
            job.emit(event)
        except Exception:  # the receiving side is gone (event loop closed)
            log.debug("dropping output of a job whose client is gone", exc_info=True)
            job.cancel()

    def _release(self, slot: Slot) -> None:
        """Free the slot for the next job; its KV cache stays as a reusable prefix."""
        if slot.job is not None:
            slot.job.sampler.close()
        slot.job = None
        slot.next_token = None
        slot.pending = []
        # Prompt tokens that were never decoded are not in the cache: trim the history.
        pos_max = self._ctx.seq_pos_max(slot.seq)
        del slot.cache[pos_max + 1 :]

    def _fail_active(self, message: str) -> None:
        """A decode failed: its state is unknown, so error every busy slot and reset it."""
        for slot in self._slots:
            if slot.job is not None:
                self._emit(slot, CompletionError(message))
                self._release(slot)
                self._ctx.seq_rm(slot.seq, -1, -1)
                slot.cache.clear()

    def _fail_all(self, message: str) -> None:
        with self._wake:
            queued = list(self._queue)
            self._queue.clear()
        for job in queued:
            if not job.cancelled:
                try:
                    job.emit(CompletionError(message))
                except Exception:
                    log.debug("could not report shutdown to a queued job", exc_info=True)
            job.sampler.close()
        for slot in self._slots:
            if slot.job is not None:
                self._emit(slot, CompletionError(message))
                self._release(slot)
