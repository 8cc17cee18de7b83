"""Wire types shared by a runner process and the server's handle on it.

This module is pure (no llama.cpp, no I/O) so that `ollamapy.llm` can import it without
pulling in the engine. Everything that crosses the process boundary is defined here:

* the command line the parent uses to start a runner (`LaunchArgs`),
* the single JSON line the runner prints on stdout once it listens (`ListeningLine`),
* the JSON bodies of each HTTP endpoint, and the NDJSON lines of `POST /completion`.

Every type converts to a JSON-able dict with `to_json()` and back with `from_json()`;
`from_json` raises `ProtocolError` (a `BadRequestError`) naming the offending field.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from ollamapy.errors import BadRequestError
from ollamapy.types.options import SamplingOptions, validate_options

HEALTH_PATH = "/health"
INFO_PATH = "/info"
COMPLETION_PATH = "/completion"
TOKENIZE_PATH = "/tokenize"
DETOKENIZE_PATH = "/detokenize"
EMBEDDING_PATH = "/embedding"

NDJSON_MEDIA_TYPE = "application/x-ndjson"

QUANTIZE_TYPES = {"F32": 0, "F16": 1, "Q8_0": 7, "Q4_K_S": 14, "Q4_K_M": 15}
"""The file types `ollama create --quantize` accepts, as llama.cpp's `llama_ftype` values;
the quantizer child (`ollamapy.runner.quantize`) takes the name on its command line."""
_QUANTIZE_ALIASES = {"Q4_K": "Q4_K_M"}


def quantize_type_named(name: str) -> str:
    """The canonical file type for a user's spelling (`q4_k_m` -> `Q4_K_M`), else a
    `BadRequestError` naming the supported types, as Ollama words it."""
    key = name.strip().upper()
    key = _QUANTIZE_ALIASES.get(key, key)
    if key not in QUANTIZE_TYPES:
        supported = ", ".join(QUANTIZE_TYPES)
        raise BadRequestError(
            f"unsupported quantization type {name} - supported types are {supported}"
        )
    return key


DoneReason = Literal["stop", "length"]
Format: TypeAlias = str | dict[str, Any] | None


class ProtocolError(BadRequestError):
    """A message on the wire does not have the expected shape."""


# --------------------------------------------------------------------------- helpers


def _mapping(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{what} must be a JSON object")
    return raw


def _get(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """Read one field, checking its JSON type; bools are never accepted as numbers."""
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    numeric = kind is int or kind is float or (isinstance(kind, tuple) and int in kind)
    if not isinstance(value, kind) or (numeric and isinstance(value, bool)):
        raise ProtocolError(f"field {key!r} has the wrong type")
    return value


def _int_list(raw: Mapping[str, Any], key: str) -> list[int]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ProtocolError(f"field {key!r} must be a list of integers")
    return list(value)


# --------------------------------------------------------------------------- launch


@dataclass(frozen=True, slots=True)
class LaunchArgs:
    """The runner's command line: `python -m ollamapy.runner` + `to_argv()`.

    `num_ctx` is the context of ONE sequence; the runner allocates `num_ctx * parallel`.
    `num_gpu` -1 means "all layers if this build can offload, else none"; `num_thread` 0
    means "the number of physical cores". `use_mmap` None lets llama.cpp decide.
    `port` 0 makes the runner pick a free port and announce it on stdout.
    """

    model: str
    port: int = 0
    host: str = "127.0.0.1"
    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    num_thread: int = 0
    parallel: int = 1
    use_mmap: bool | None = None
    use_mlock: bool = False
    flash_attention: bool | None = None
    kv_cache_type: str | None = None
    embedding: bool = False
    lora: tuple[str, ...] = ()
    parent_pid: int | None = None
    verbose: bool = False

    def to_argv(self) -> list[str]:
        argv = ["--model", self.model, "--port", str(self.port), "--host", self.host]
        argv += ["--ctx-size", str(self.num_ctx), "--batch-size", str(self.num_batch)]
        argv += ["--n-gpu-layers", str(self.num_gpu), "--main-gpu", str(self.main_gpu)]
        argv += ["--threads", str(self.num_thread), "--parallel", str(self.parallel)]
        if self.use_mmap is not None:
            argv.append("--mmap" if self.use_mmap else "--no-mmap")
        if self.use_mlock:
            argv.append("--mlock")
        if self.flash_attention is not None:
            argv.append("--flash-attn" if self.flash_attention else "--no-flash-attn")
        if self.kv_cache_type:
            argv += ["--kv-cache-type", self.kv_cache_type]
        if self.embedding:
            argv.append("--embedding")
        for path in self.lora:
            argv += ["--lora", path]
        if self.parent_pid is not None:
            argv += ["--parent-pid", str(self.parent_pid)]
        if self.verbose:
            argv.append("--verbose")
        return argv

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> LaunchArgs:
        ns = _argument_parser().parse_args(list(argv))
        return cls(
            model=ns.model,
            port=ns.port,
            host=ns.host,
            num_ctx=ns.ctx_size,
            num_batch=ns.batch_size,
            num_gpu=ns.n_gpu_layers,
            main_gpu=ns.main_gpu,
            num_thread=ns.threads,
            parallel=ns.parallel,
            use_mmap=ns.mmap,
            use_mlock=ns.mlock,
            flash_attention=ns.flash_attn,
            kv_cache_type=ns.kv_cache_type,
            embedding=ns.embedding,
            lora=tuple(ns.lora),
            parent_pid=ns.parent_pid,
            verbose=ns.verbose,
        )


def _argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ollamapy.runner", description="Serve one model.")
    p.add_argument("--model", required=True, help="path to the GGUF file")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ctx-size", type=int, default=4096, help="context per sequence")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-gpu-layers", type=int, default=-1)
    p.add_argument("--main-gpu", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--mmap", dest="mmap", action="store_true", default=None)
    p.add_argument("--no-mmap", dest="mmap", action="store_false")
    p.add_argument("--mlock", action="store_true")
    p.add_argument("--flash-attn", dest="flash_attn", action="store_true", default=None)
    p.add_argument("--no-flash-attn", dest="flash_attn", action="store_false")
    p.add_argument("--kv-cache-type", default=None, choices=["f16", "q8_0", "q4_0"])
    p.add_argument("--embedding", action="store_true")
    p.add_argument("--lora", action="append", default=[])
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--verbose", action="store_true")
    return p


@dataclass(frozen=True, slots=True)
class ListeningLine:
    """The one JSON line a runner prints on stdout once its HTTP socket is bound.

    The model is still loading at that point; poll `GET /health` until it says "ok".
    """

    port: int
    pid: int

    def to_json(self) -> dict[str, Any]:
        return {"event": "listening", "port": self.port, "pid": self.pid}

    @classmethod
    def from_json(cls, raw: object) -> ListeningLine:
        data = _mapping(raw, "listening line")
        if data.get("event") != "listening":
            raise ProtocolError("not a listening line")
        return cls(port=_get(data, "port", int, 0), pid=_get(data, "pid", int, 0))


# --------------------------------------------------------------------------- health/info


@dataclass(frozen=True, slots=True)
class Health:
    """`GET /health`: 200 with status "ok" once loaded, 503 with "loading" before."""

    status: Literal["ok", "loading", "error"]
    progress: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "progress": self.progress}

    @classmethod
    def from_json(cls, raw: object) -> Health:
        data = _mapping(raw, "health")
        status = data.get("status")
        if status not in ("ok", "loading", "error"):
            raise ProtocolError("field 'status' is invalid")
        return cls(status=status, progress=float(_get(data, "progress", (int, float), 0.0)))


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    """`GET /info`: facts about the loaded model and how the runner was set up."""

    n_ctx: int
    n_ctx_train: int
    n_parallel: int
    n_vocab: int
    n_embd: int
    add_bos: bool
    description: str
    size: int
    n_params: int
    has_encoder: bool
    embeddings: bool
    gpu_offload: bool
    n_gpu_layers: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: object) -> RunnerInfo:
        data = _mapping(raw, "info")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                raise ProtocolError(f"field {f.name!r} is missing")
            kind = {"bool": bool, "str": str}.get(str(f.type), int)
            values[f.name] = _get(data, f.name, kind, None)
        return cls(**values)


# --------------------------------------------------------------------------- completion


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """`POST /completion`: a fully templated prompt plus per-request sampling options.

    `format` is None, "json" (any JSON value) or a JSON schema object; `images` are
    base64 strings (reserved for multimodal runners; a text-only runner rejects them).
    `stream` False asks for the text in one chunk just before the done line: for a
    client that waits for the whole answer anyway, the two processes then exchange
    nothing while it is generated.
    """

    prompt: str
    options: SamplingOptions = field(default_factory=SamplingOptions)
    format: Format = None
    images: tuple[str, ...] = ()
    stream: bool = True

    def to_json(self) -> dict[str, Any]:
        options = dataclasses.asdict(self.options)
        options["stop"] = list(self.options.stop)
        return {
            "prompt": self.prompt,
            "options": options,
            "format": self.format,
            "images": list(self.images),
            "stream": self.stream,
        }

    @classmethod
    def from_json(cls, raw: object) -> CompletionRequest:
        data = _mapping(raw, "request")
        prompt = _get(data, "prompt", str, "")
        options = SamplingOptions.from_options(validate_options(data.get("options")))
        fmt = data.get("format")
        if fmt == "":
            fmt = None
        if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
            raise ProtocolError("field 'format' must be null, \"json\" or a JSON schema")
        images = data.get("images") or []
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise ProtocolError("field 'images' must be a list of strings")
        stream = _get(data, "stream", bool, True)
        return cls(prompt=prompt, options=options, format=fmt, images=tuple(images), stream=stream)


@dataclass(frozen=True, slots=True)
class CompletionChunk:
    """One NDJSON line of generated text (never splits a UTF-8 character)."""

    content: str

    def to_json(self) -> dict[str, Any]:
        return {"content": self.content}


@dataclass(frozen=True, slots=True)
class CompletionDone:
    """The last NDJSON line of a successful completion; durations are nanoseconds.

    `tokens` holds the prompt tokens followed by every generated token (the EOG token
    excluded), so a client can send them back as Ollama's `context`.

    `prompt_eval_count` is the whole prompt (after truncation to the context), as
    Ollama's runner reports it, whether or not a prefix came from the KV cache: clients
    bill and budget by it. `prompt_cached_count` says how many of those tokens were
    reused from the cache, and `prompt_eval_duration` is the time spent on the rest.
    """

    done_reason: DoneReason
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    tokens: list[int] = field(default_factory=list)
    prompt_cached_count: int = 0

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies `tokens` item by item (ms for a long chat).
        return {
            "done": True,
            "done_reason": self.done_reason,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration,
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration,
            "tokens": self.tokens,
            "prompt_cached_count": self.prompt_cached_count,
        }


@dataclass(frozen=True, slots=True)
class CompletionError:
    """The last NDJSON line when generation failed after the stream had started."""

    error: str

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error}


CompletionEvent: TypeAlias = CompletionChunk | CompletionDone | CompletionError


def parse_completion_line(raw: object) -> CompletionEvent:
    """Turn one decoded NDJSON line of `POST /completion` into its event type."""
    data = _mapping(raw, "completion line")
    if "error" in data:
        return CompletionError(error=str(data["error"]))
    if data.get("done"):
        reason = data.get("done_reason")
        if reason not in ("stop", "length"):
            raise ProtocolError("field 'done_reason' is invalid")
        return CompletionDone(
            done_reason=reason,
            prompt_eval_count=_get(data, "prompt_eval_count", int, 0),
            prompt_eval_duration=_get(data, "prompt_eval_duration", int, 0),
            eval_count=_get(data, "eval_count", int, 0),
            eval_duration=_get(data, "eval_duration", int, 0),
            tokens=_int_list(data, "tokens"),
            prompt_cached_count=_get(data, "prompt_cached_count", int, 0),
        )
    return CompletionChunk(content=_get(data, "content", str, ""))


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class TokenizeRequest:
    """`POST /tokenize`; `add_special` adds BOS/EOS where the model asks for them."""

    content: str
    add_special: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"content": self.content, "add_special": self.add_special}

    @classmethod
    def from_json(cls, raw: object) -> TokenizeRequest:
        data = _mapping(raw, "request")
        return cls(
            content=_get(data, "content", str, ""),
            add_special=_get(data, "add_special", bool, True),
        )


@dataclass(frozen=True, slots=True)
class TokenizeResponse:
    tokens: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    @classmethod
    def from_json(cls, raw: object) -> TokenizeResponse:
        return cls(tokens=_int_list(_mapping(raw, "response"), "tokens"))


@dataclass(frozen=True, slots=True)
class DetokenizeRequest:
    tokens: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    @classmethod
    def from_json(cls, raw: object) -> DetokenizeRequest:
        return cls(tokens=_int_list(_mapping(raw, "request"), "tokens"))


@dataclass(frozen=True, slots=True)
class DetokenizeResponse:
    content: str

    def to_json(self) -> dict[str, Any]:
        return {"content": self.content}

    @classmethod
    def from_json(cls, raw: object) -> DetokenizeResponse:
        return cls(content=_get(_mapping(raw, "response"), "content", str, ""))


# --------------------------------------------------------------------------- embeddings


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """`POST /embedding`: texts to embed; `truncate` cuts inputs longer than the context."""

    content: list[str]
    truncate: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"content": self.content, "truncate": self.truncate}

    @classmethod
    def from_json(cls, raw: object) -> EmbeddingRequest:
        data = _mapping(raw, "request")
        content = data.get("content", [])
        if isinstance(content, str):
            content = [content]
        if not isinstance(content, list) or not all(isinstance(c, str) for c in content):
            raise ProtocolError("field 'content' must be a string or a list of strings")
        return cls(content=list(content), truncate=_get(data, "truncate", bool, True))


EMBEDDING_DTYPE = "<f4"
"""How `EmbeddingResponse.data` lays out the vectors: little-endian float32, row-major."""
_F32 = np.dtype(EMBEDDING_DTYPE).itemsize


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    """Raw (unnormalised) vectors, one per input, and the number of tokens evaluated.

    The vectors travel as one matrix of `rows` x `dim` little-endian float32 values
    (`data`, base64 in JSON, next to its `shape`): formatting and re-parsing every float
    as JSON text cost more than computing the embeddings. `from_json` checks the shape
    against the byte length, not each value.
    """

    data: bytes
    rows: int
    dim: int
    prompt_eval_count: int

    def __post_init__(self) -> None:
        if self.rows < 0 or self.dim < 0:
            raise ProtocolError("field 'shape' must hold two non-negative integers")
        if len(self.data) != self.rows * self.dim * _F32:
            raise ProtocolError(
                f"field 'embeddings' holds {len(self.data)} bytes, "
                f"not {self.rows} x {self.dim} float32 values"
            )

    @classmethod
    def from_vectors(cls, vectors: npt.ArrayLike, prompt_eval_count: int) -> EmbeddingResponse:
        """Pack equal-length vectors: lists, or the rows of a matrix such as the runner's
        float32 result (float32, so values round to single precision)."""
        try:
            matrix = np.asarray(vectors, dtype=EMBEDDING_DTYPE)
        except ValueError:  # ragged: numpy refuses an inhomogeneous shape
            raise ProtocolError("embedding vectors must all have the same length") from None
        if matrix.shape == (0,):  # no vectors at all
            matrix = matrix.reshape(0, 0)
        if matrix.ndim != 2:
            raise ProtocolError("embedding vectors must be a list of equal-length vectors")
        rows, dim = matrix.shape
        return cls(np.ascontiguousarray(matrix).tobytes(), rows, dim, prompt_eval_count)

    def matrix(self) -> npt.NDArray[np.float32]:
        """The vectors as the rows of a native float32 matrix."""
        packed = np.frombuffer(self.data, dtype=EMBEDDING_DTYPE).reshape(self.rows, self.dim)
        return packed.astype(np.float32)

    def vectors(self) -> list[list[float]]:
        """The vectors as Python floats."""
        rows: list[list[float]] = self.matrix().tolist()
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "embeddings": base64.b64encode(self.data).decode("ascii"),
            "dtype": EMBEDDING_DTYPE,
            "shape": [self.rows, self.dim],
            "prompt_eval_count": self.prompt_eval_count,
        }

    @classmethod
    def from_json(cls, raw: object) -> EmbeddingResponse:
        data = _mapping(raw, "response")
        if _get(data, "dtype", str, EMBEDDING_DTYPE) != EMBEDDING_DTYPE:
            raise ProtocolError(f"field 'dtype' must be {EMBEDDING_DTYPE!r}")
        encoded = _get(data, "embeddings", str, "")
        shape = data.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
        ):
            raise ProtocolError("field 'shape' must hold two non-negative integers")
        try:
            raw_bytes = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("field 'embeddings' is not valid base64") from exc
        return cls(
            data=raw_bytes,
            rows=shape[0],
            dim=shape[1],
            prompt_eval_count=_get(data, "prompt_eval_count", int, 0),
        )
