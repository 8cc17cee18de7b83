"""Owned handles over llama.cpp's low-level C API (via llama-cpp-python's ctypes bindings).

Each class owns exactly one native object and frees it in `close()` (idempotent; also a
context manager), so the lifetime of every llama.cpp allocation is explicit. Nothing
here knows about HTTP, slots or requests; see `engine.py` for that.

Hot-path methods (`Batch.add`, `SamplerChain.sample`, `Model.piece`, `Model.is_eog`)
avoid allocations: pointers into the batch arrays are cached once, pieces are cached per
token id, and sampling runs entirely in C.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import llama_cpp as lc
import numpy as np
import numpy.typing as npt

from ollamapy.runner.sampling import SamplerStep

log = logging.getLogger(__name__)

_KV_TYPES = {"f16": lc.GGML_TYPE_F16, "q8_0": lc.GGML_TYPE_Q8_0, "q4_0": lc.GGML_TYPE_Q4_0}

# ggml_log_level as this build numbers it: 1 debug, 2 info, 3 warn, 4 error, 5 continuation.
_LOG_WARN = 3
_LOG_ERROR = 4
_LOG_CONT = 5


class NativeError(RuntimeError):
    """llama.cpp refused an operation (load failure, bad grammar, decode error...)."""


class _Owned:
    """Base for a single native handle with a deterministic, idempotent `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- logging


class _NativeLog:
    """Routes llama.cpp's log lines to stderr and remembers recent errors for messages.

    Without this, llama.cpp prints every debug line of a model load; we keep warnings and
    errors (everything when verbose), since the parent forwards our stderr to its log.
    """

    def __init__(self) -> None:
        self.verbose = False
        self.errors: list[str] = []
        self._last_level = 0
        self._callback = lc.llama_log_callback(self._on_log)

    def install(self, verbose: bool) -> None:
        self.verbose = verbose
        lc.llama_log_set(self._callback, ctypes.c_void_p(0))

    def reason(self, fallback: str) -> str:
        """The most telling recent error line (llama.cpp logs a cascade of them)."""
        for line in self.errors:
            marker = "error loading model: "
            if marker in line:
                return line.split(marker, 1)[1]
        return self.errors[0] if self.errors else fallback

    def _on_log(self, level: int, text: bytes | None, _user: Any) -> None:
        if level == _LOG_CONT:
            level = self._last_level
        self._last_level = level
        line = (text or b"").decode("utf-8", errors="replace")
        if level == _LOG_ERROR and line.strip():
            self.errors = [*self.errors[-19:], line.strip()]
        if self.verbose or level >= _LOG_WARN:
            sys.stderr.write(line)


NATIVE_LOG = _NativeLog()
_backend_lock = threading.Lock()
_backend_ready = False


def init_backend(*, verbose: bool = False) -> None:
    """Initialise llama.cpp once per process and take over its logging."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            NATIVE_LOG.install(verbose)
            lc.llama_backend_init()
            _backend_ready = True


def supports_gpu_offload() -> bool:
    return bool(lc.llama_supports_gpu_offload())


def physical_cores() -> int:
    """Number of physical cores (hyper-threads don't speed up decoding), like Ollama."""
    cores: set[tuple[str, str]] = set()
    try:
        physical = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                physical = value.strip()
            elif key == "core id":
                core = value.strip()
                cores.add((physical, core))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


# --------------------------------------------------------------------------- model


def _load_mode(use_mmap: bool | None, use_mlock: bool) -> int:
    """Map Ollama's mmap/mlock switches onto llama.cpp's `llama_load_mode` enum."""
    if use_mmap is None and not use_mlock:
        return -1  # LLAMA_LOAD_MODE_AUTO
    mmap = use_mmap is not False
    if mmap:
        return 3 if use_mlock else 1  # MMAP_MLOCK / MMAP
    return 2 if use_mlock else 0  # MLOCK / NONE


class Model(_Owned):
    """A loaded `llama_model` plus its vocabulary, with tokenizer helpers."""

    def __init__(
        self,
        path: str,
        *,
        n_gpu_layers: int = 0,
        main_gpu: int = 0,
        use_mmap: bool | None = None,
        use_mlock: bool = False,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self._ptr: Any = None
        if not Path(path).is_file():
            raise NativeError(f"model file not found: {path}")
        params = lc.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.main_gpu = main_gpu
        params.load_mode = _load_mode(use_mmap, use_mlock)
        callback = None
        if progress is not None:

            def report(value: float, _user: Any) -> bool:
                progress(float(value))
                return True

            callback = lc.llama_progress_callback(report)
            params.progress_callback = callback
        NATIVE_LOG.errors = []
        self._ptr = lc.llama_model_load_from_file(path.encode(), params)
        if not self._ptr:
            detail = NATIVE_LOG.reason("the file is not a model llama.cpp can load")
            raise NativeError(f"error loading model {path}: {detail}")
        self.vocab = lc.llama_model_get_vocab(self._ptr)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self._pieces: list[bytes | None] = [None] * self.n_vocab
        self._piece_buf = ctypes.create_string_buffer(256)

    @property
    def ptr(self) -> Any:
        return self._ptr

    def close(self) -> None:
        if self._ptr:
            lc.llama_model_free(self._ptr)
            self._ptr = None

    # facts -----------------------------------------------------------------

    @property
    def n_ctx_train(self) -> int:
        return int(lc.llama_model_n_ctx_train(self._ptr))

    @property
    def n_embd(self) -> int:
        return int(lc.llama_model_n_embd(self._ptr))

    @property
    def size(self) -> int:
        return int(lc.llama_model_size(self._ptr))

    @property
    def n_params(self) -> int:
        return int(lc.llama_model_n_params(self._ptr))

    @property
    def has_encoder(self) -> bool:
        return bool(lc.llama_model_has_encoder(self._ptr))

    @property
    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        lc.llama_model_desc(self._ptr, buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    # tokens ----------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        out = (lc.llama_token * capacity)()
        n = lc.llama_tokenize(
            self.vocab, data, len(data), out, capacity, add_special, parse_special
        )
        if n < 0:  # buffer too small: -n is the size needed
            capacity = -n
            out = (lc.llama_token * capacity)()
            n = lc.llama_tokenize(
                self.vocab, data, len(data), out, capacity, add_special, parse_special
            )
        if n < 0:
            raise NativeError("tokenization failed")
        return list(out[:n])

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def valid_token(self, token: int) -> bool:
        return 0 <= token < self.n_vocab

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens rendered), cached per token id."""
        cached = self._pieces[token]
        if cached is None:
            cached = self._render_piece(token)
            self._pieces[token] = cached
        return cached

    def _render_piece(self, token: int) -> bytes:
        buf = self._piece_buf
        n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)]

    def is_eog(self, token: int) -> bool:
        return bool(lc.llama_vocab_is_eog(self.vocab, token))

    @property
    def add_eos(self) -> bool:
        return bool(lc.llama_vocab_get_add_eos(self.vocab))

    def is_special(self, token: int) -> bool:
        """Whether the tokenizer matches this token's text as a whole before it splits the
        rest into words (control, user-defined and unknown tokens, as llama.cpp does)."""
        attr = int(lc.llama_vocab_get_attr(self.vocab, token))
        return bool(attr & _SPECIAL_ATTRS)


_SPECIAL_ATTRS = (
    lc.LLAMA_TOKEN_ATTR_CONTROL | lc.LLAMA_TOKEN_ATTR_USER_DEFINED | lc.LLAMA_TOKEN_ATTR_UNKNOWN
)


class LoraAdapter(_Owned):
    """A LoRA adapter file loaded against a model (applied to a context at scale 1)."""

    def __init__(self, model: Model, path: str) -> None:
        self._ptr: Any = None
        if not Path(path).is_file():
            raise NativeError(f"adapter file not found: {path}")
        self._ptr = lc.llama_adapter_lora_init(model.ptr, path.encode())
        if not self._ptr:
            raise NativeError(f"error loading adapter {path}: {NATIVE_LOG.reason('unknown error')}")

    @property
    def ptr(self) -> Any:
        return self._ptr

    def close(self) -> None:
        if self._ptr:
            lc.llama_adapter_lora_free(self._ptr)
            self._ptr = None


# --------------------------------------------------------------------------- context


class Context(_Owned):
    """A `llama_context` with `n_seq_max` sequences of `n_ctx_seq` tokens each."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx_seq: int,
        n_seq_max: int,
        n_batch: int,
        n_threads: int,
        flash_attention: bool | None = None,
        kv_cache_type: str | None = None,
        embeddings: bool = False,
        pooling: int | None = None,
        kv_unified: bool = False,
    ) -> None:
        self._ptr: Any = None
        params = lc.llama_context_default_params()
        # Without kv_unified every sequence has its own KV stream of `n_ctx_seq` cells, so
        # a sequence's attention never depends on where other sequences sit in the cache:
        # a greedy generation gives the same text alone or batched with others. (A unified
        # cache was measured no faster for 8 slots on 2 CPU cores and broke that.)
        # kv_unified: one cache shared by the sequences, `n_ctx_seq` is then the total.
        params.n_ctx = n_ctx_seq if kv_unified else n_ctx_seq * n_seq_max
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.embeddings = embeddings
        if pooling is not None:
            params.pooling_type = pooling
        params.kv_unified = kv_unified
        if flash_attention is not None:
            params.flash_attn_type = 1 if flash_attention else 0
        if kv_cache_type:
            params.type_k = params.type_v = _KV_TYPES[kv_cache_type]
        self._ptr = lc.llama_init_from_model(model.ptr, params)
        if not self._ptr:
            raise NativeError(f"failed to create the context: {NATIVE_LOG.reason('unknown error')}")
        self._memory = lc.llama_get_memory(self._ptr)
        self.n_ctx_seq = int(lc.llama_n_ctx_seq(self._ptr))
        self.n_batch = int(lc.llama_n_batch(self._ptr))
        """The most tokens one decode may take: llama.cpp lowers the asked `n_batch` to the
        context size, and a larger batch aborts the process."""
        self.n_seq_max = n_seq_max
        self.can_shift = bool(lc.llama_memory_can_shift(self._memory))
        self._threads_wanted = n_threads
        self._threads_set = n_threads

    @property
    def ptr(self) -> Any:
        return self._ptr

    def close(self) -> None:
        if self._ptr:
            lc.llama_free(self._ptr)
            self._ptr = None

    def set_adapters(self, adapters: Sequence[LoraAdapter]) -> None:
        if not adapters:
            return
        ptrs = (lc.llama_adapter_lora_p_ctypes * len(adapters))(*(a.ptr for a in adapters))
        scales = (ctypes.c_float * len(adapters))(*([1.0] * len(adapters)))
        if lc.llama_set_adapters_lora(self._ptr, ptrs, len(adapters), scales) != 0:
            raise NativeError("failed to apply the LoRA adapters")

    def request_threads(self, n_threads: int) -> None:
        """Ask for `n_threads` from the next decode on (safe from any thread).

        The count is applied by the thread that decodes, just before its next decode, so
        it never changes under a decode in progress (the runners of several models share
        the cores this way: see `scheduler.cores`).
        """
        self._threads_wanted = max(1, n_threads)

    @property
    def threads_requested(self) -> int:
        """The thread count the next decode will run with."""
        return self._threads_wanted

    @property
    def n_threads(self) -> int:
        """The thread count the last decode ran with (llama.cpp's own value)."""
        return int(lc.llama_n_threads(self._ptr))

    def decode(self, batch: Batch) -> int:
        """Run the model on `batch` (the GIL is released meanwhile); 0 on success."""
        wanted = self._threads_wanted
        if wanted != self._threads_set:
            lc.llama_set_n_threads(self._ptr, wanted, wanted)
            self._threads_set = wanted
        return int(lc.llama_decode(self._ptr, batch.struct))

    def logits(self, index: int, n_vocab: int) -> npt.NDArray[np.float32]:
        """The raw logits at batch `index` of the last decode: a view into llama.cpp's
        buffer, valid until the next decode (copy what must outlive it)."""
        ptr = lc.llama_get_logits_ith(self._ptr, index)
        if not ptr:
            raise NativeError(f"no logits at batch index {index}")
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    def seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        return bool(lc.llama_memory_seq_rm(self._memory, seq, p0, p1))

    def seq_cp(self, source: int, target: int) -> None:
        """Give `target` a copy of `source`'s whole cache (a buffer copy between KV
        streams, made by llama.cpp at the start of the next decode)."""
        lc.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    def seq_add(self, seq: int, p0: int, p1: int, delta: int) -> None:
        lc.llama_memory_seq_add(self._memory, seq, p0, p1, delta)

    def seq_pos_min(self, seq: int) -> int:
        """The sequence's smallest cached position (-1 when empty); above 0 once a cache
        that drops old cells (sliding-window layers) has dropped its start."""
        return int(lc.llama_memory_seq_pos_min(self._memory, seq))

    def seq_pos_max(self, seq: int) -> int:
        return int(lc.llama_memory_seq_pos_max(self._memory, seq))

    def clear(self) -> None:
        lc.llama_memory_clear(self._memory, True)

    def seq_state_get(self, seq: int) -> bytes:
        """A copy of the sequence's KV state (llama.cpp's serialised per-sequence state),
        to be put back by `seq_state_set`; empty bytes when the sequence is empty."""
        size = int(lc.llama_state_seq_get_size(self._ptr, seq))
        if size <= 0:
            return b""
        buf = (ctypes.c_uint8 * size)()
        written = int(lc.llama_state_seq_get_data(self._ptr, buf, size, seq))
        return bytes(memoryview(buf)[:written])

    def seq_state_set(self, seq: int, data: bytes) -> bool:
        """Load a state from `seq_state_get` into `seq` (which must be empty); False when
        llama.cpp refuses it (another model or context shape, or too long to fit)."""
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return int(lc.llama_state_seq_set_data(self._ptr, buf, len(data), seq)) > 0


def build_identity() -> str:
    """The llama.cpp build and machine features a saved KV state depends on."""
    system = lc.llama_print_system_info().decode("utf-8", errors="replace").strip()
    return f"llama-cpp-python {lc.__version__}; {system}"


class Batch(_Owned):
    """A reusable `llama_batch` of `capacity` tokens, one sequence id per token."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.struct = lc.llama_batch_init(capacity, 0, 1)
        self._alive = True
        s = self.struct
        # Cache the pointers once: attribute access on a ctypes struct allocates.
        self._token, self._pos, self._logits = s.token, s.pos, s.logits
        self._seq = [s.seq_id[i] for i in range(capacity)]
        n_seq = s.n_seq_id
        for i in range(capacity):
            n_seq[i] = 1
        self.n_tokens = 0

    def close(self) -> None:
        if self._alive:
            lc.llama_batch_free(self.struct)
            self._alive = False

    def clear(self) -> None:
        self.n_tokens = 0
        self.struct.n_tokens = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n_tokens

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token; return its index (the index to sample at when `logits`)."""
        i = self.n_tokens
        self._token[i] = token
        self._pos[i] = pos
        self._seq[i][0] = seq
        self._logits[i] = logits
        self.n_tokens = i + 1
        self.struct.n_tokens = i + 1
        return i

    def add_outputs(self, tokens: Sequence[int], pos: int, seq: int) -> int:
        """Append consecutive tokens of one sequence, each with logits (a draft to verify);
        return the index of the first one."""
        start = self.n_tokens
        token, position, seqs, logits = self._token, self._pos, self._seq, self._logits
        for offset, tok in enumerate(tokens):
            i = start + offset
            token[i] = tok
            position[i] = pos + offset
            seqs[i][0] = seq
            logits[i] = 1
        self.n_tokens = start + len(tokens)
        self.struct.n_tokens = self.n_tokens
        return start

    def add_run(self, tokens: Sequence[int], pos: int, seq: int, logits_last: bool) -> int:
        """Append consecutive tokens of one sequence; return the index of the last one."""
        start = self.n_tokens
        token, position, seqs, logits = self._token, self._pos, self._seq, self._logits
        for offset, tok in enumerate(tokens):
            i = start + offset
            token[i] = tok
            position[i] = pos + offset
            seqs[i][0] = seq
            logits[i] = 0
        last = start + len(tokens) - 1
        logits[last] = logits_last
        self.n_tokens = last + 1
        self.struct.n_tokens = last + 1
        return last


# --------------------------------------------------------------------------- sampling


class SamplerChain(_Owned):
    """A native `llama_sampler` chain built from a plan; samples one token per call.

    `history` (the prompt) primes the penalties sampler, as llama.cpp's server does, so
    repetition of prompt text is penalised too; the grammar sampler never sees it.
    """

    def __init__(self, model: Model, plan: Sequence[SamplerStep], history: Sequence[int] = ()):
        self._ptr: Any = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        try:
            for step in plan:
                sampler = _init_sampler(model, step)
                if step.name == "penalties":
                    for token in history[-int(step.params["last_n"]) :]:
                        lc.llama_sampler_accept(sampler, token)
                lc.llama_sampler_chain_add(self._ptr, sampler)  # the chain owns it now
        except BaseException:
            self.close()
            raise

    def sample(self, ctx: Context, index: int) -> int:
        """Pick (and accept) the next token from the logits at batch `index`."""
        return int(lc.llama_sampler_sample(self._ptr, ctx.ptr, index))

    def accept(self, token: int) -> None:
        """Tell the chain about a token chosen for it (penalties count it)."""
        lc.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        if self._ptr:
            lc.llama_sampler_free(self._ptr)
            self._ptr = None


def _init_sampler(model: Model, step: SamplerStep) -> Any:
    p = step.params
    match step.name:
        case "grammar":
            ptr = lc.llama_sampler_init_grammar(
                model.vocab, p["grammar"].encode(), p["root"].encode()
            )
            if not ptr:
                raise NativeError(f"invalid grammar: {NATIVE_LOG.reason('unknown error')}")
            return ptr
        case "penalties":
            return lc.llama_sampler_init_penalties(
                p["n_vocab"], p["last_n"], p["repeat"], p["freq"], p["present"]
            )
        case "top_k":
            return lc.llama_sampler_init_top_k(p["k"])
        case "typical":
            return lc.llama_sampler_init_typical(p["p"], p["min_keep"])
        case "top_p":
            return lc.llama_sampler_init_top_p(p["p"], p["min_keep"])
        case "min_p":
            return lc.llama_sampler_init_min_p(p["p"], p["min_keep"])
        case "temp_ext":
            return lc.llama_sampler_init_temp_ext(p["t"], p["delta"], p["exponent"])
        case "dist":
            return lc.llama_sampler_init_dist(p["seed"])
        case "greedy":
            return lc.llama_sampler_init_greedy()
    raise NativeError(f"unknown sampler {step.name!r}")
