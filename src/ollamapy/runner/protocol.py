"""Wire types shared by a runner process and the server's handle on it.

This module is pure (no llama.cpp, no I/O) so that `ollamapy.llm` can import it without
pulling in the engine. Everything that crosses the process boundary is defined here:

the JSON bodies of each HTTP endpoint, and the NDJSON lines of `POST /completion` (how
the process is started and announces itself is `runner.launch`).

Every type converts to a JSON-able dict with `to_json()` and back with `from_json()`;
`from_json` raises `ProtocolError` (a `BadRequestError`) naming the offending field.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from ollamapy.errors import BadRequestError
from ollamapy.types.logprobs import TokenLogprob, check_top_logprobs
from ollamapy.types.options import SamplingOptions, validate_options

HEALTH_PATH = "/health"
INFO_PATH = "/info"
COMPLETION_PATH = "/completion"
TOKENIZE_PATH = "/tokenize"
DETOKENIZE_PATH = "/detokenize"
EMBEDDING_PATH = "/embedding"
THREADS_PATH = "/threads"

NDJSON_MEDIA_TYPE = "application/x-ndjson"

DoneReason = Literal["stop", "length"]
Format: TypeAlias = str | dict[str, Any] | None


class ProtocolError(BadRequestError):
    """A message on the wire does not have the expected shape."""


# --------------------------------------------------------------------------- helpers


def json_object(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{what} must be a JSON object")
    return raw


def json_field(
    raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any
) -> Any:
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
        data = json_object(raw, "health")
        status = data.get("status")
        if status not in ("ok", "loading", "error"):
            raise ProtocolError("field 'status' is invalid")
        return cls(status=status, progress=float(json_field(data, "progress", (int, float), 0.0)))


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
        data = json_object(raw, "info")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                raise ProtocolError(f"field {f.name!r} is missing")
            kind = {"bool": bool, "str": str}.get(str(f.type), int)
            values[f.name] = json_field(data, f.name, kind, None)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ThreadsRequest:
    """`POST /threads`: decode with `n_threads` threads from the next decode on.

    The server's scheduler sends it to share the cores between runners that are busy at
    the same time; the runner caps it at the `--threads` it was started with, if any.
    """

    n_threads: int

    def to_json(self) -> dict[str, Any]:
        return {"n_threads": self.n_threads}

    @classmethod
    def from_json(cls, raw: object) -> ThreadsRequest:
        n_threads = json_field(json_object(raw, "threads request"), "n_threads", int, None)
        if n_threads is None or n_threads < 1:
            raise ProtocolError("field 'n_threads' must be a positive integer")
        return cls(n_threads)


@dataclass(frozen=True, slots=True)
class ThreadsReply:
    """`GET`/`POST /threads`: the count asked for, and the one the last decode ran with
    (they differ until the next decode)."""

    n_threads: int
    applied: int

    def to_json(self) -> dict[str, Any]:
        return {"n_threads": self.n_threads, "applied": self.applied}

    @classmethod
    def from_json(cls, raw: object) -> ThreadsReply:
        data = json_object(raw, "threads reply")
        return cls(json_field(data, "n_threads", int, 0), json_field(data, "applied", int, 0))


# --------------------------------------------------------------------------- completion


@dataclass(frozen=True, slots=True)
class ToolCallGrammar:
    """Output that must be tool calls (`tool_choice` "required" or a named function).

    The answer is `prefix`, then one call (up to `max_calls`, 0 for no limit) joined by
    `separator`, then `suffix`; each call a JSON value valid against `schema` (an `anyOf`
    of the callable tools' call objects), keys in `order`. The runner makes it GBNF.
    """

    prefix: str
    schema: dict[str, Any]
    separator: str = ""
    suffix: str = ""
    max_calls: int = 0
    order: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "schema": self.schema,
            "separator": self.separator,
            "suffix": self.suffix,
            "max_calls": self.max_calls,
            "order": list(self.order),
        }

    @classmethod
    def from_json(cls, raw: object) -> ToolCallGrammar:
        data = json_object(raw, "tool_grammar")
        order = json_field(data, "order", list, [])
        if not all(isinstance(key, str) for key in order):
            raise ProtocolError("field 'order' must be a list of strings")
        return cls(
            prefix=json_field(data, "prefix", str, ""),
            schema=dict(json_object(data.get("schema"), "field 'schema'")),
            separator=json_field(data, "separator", str, ""),
            suffix=json_field(data, "suffix", str, ""),
            max_calls=json_field(data, "max_calls", int, 0),
            order=tuple(order),
        )


@dataclass(frozen=True, slots=True)
class TraceBudget:
    """At most `tokens` tokens of reasoning trace: the runner then writes `closing` itself
    (as llama-server's reasoning budget does). `opened`: the prompt ended with `opening`,
    so the output starts inside the trace; otherwise the trace is the one the output opens
    with `opening`, if it does."""

    tokens: int
    opening: str
    closing: str
    opened: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: object) -> TraceBudget:
        data = json_object(raw, "trace_budget")
        tokens = json_field(data, "tokens", int, 0)
        closing = json_field(data, "closing", str, "")
        if tokens < 1 or not closing:
            raise ProtocolError("field 'trace_budget' needs tokens >= 1 and a closing tag")
        return cls(
            tokens=tokens,
            opening=json_field(data, "opening", str, ""),
            closing=closing,
            opened=json_field(data, "opened", bool, False),
        )


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """`POST /completion`: a fully templated prompt plus per-request sampling options.

    `format` is None, "json" (any JSON value) or a JSON schema object; `images` are
    base64 strings (reserved for multimodal runners; a text-only runner rejects them).
    `tokens`, when the server already counted the prompt's tokens (to fit it into the
    context), are those tokens: the runner evaluates them instead of tokenizing `prompt`.
    `stream` False asks for the text in one chunk just before the done line: for a
    client that waits for the whole answer anyway, the two processes then exchange
    nothing while it is generated.
    `logprobs` asks for each emitted token's log probability (with its `top_logprobs` most
    likely alternatives, 0-20) on the chunk lines; without it nothing is computed.
    `truncate` False refuses (400) a prompt longer than the context instead of cutting it;
    `shift` False ends a generation that fills the context (done_reason "length") instead
    of shifting the context.
    """

    prompt: str
    options: SamplingOptions = field(default_factory=SamplingOptions)
    format: Format = None
    images: tuple[str, ...] = ()
    stream: bool = True
    tokens: tuple[int, ...] | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True
    shift: bool = True
    tool_grammar: ToolCallGrammar | None = None
    """Set when the answer must be tool calls; then `format` is None."""
    trace_budget: TraceBudget | None = None
    """Set to cap the reasoning trace (ignored with a grammar, which fixes the output)."""

    def to_json(self) -> dict[str, Any]:
        options = dataclasses.asdict(self.options)
        options["stop"] = list(self.options.stop)
        return {
            "prompt": self.prompt,
            "tokens": None if self.tokens is None else list(self.tokens),
            "options": options,
            "format": self.format,
            "images": list(self.images),
            "stream": self.stream,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "truncate": self.truncate,
            "shift": self.shift,
        } | (
            ({} if self.tool_grammar is None else {"tool_grammar": self.tool_grammar.to_json()})
            | ({} if self.trace_budget is None else {"trace_budget": self.trace_budget.to_json()})
        )

    @classmethod
    def from_json(cls, raw: object) -> CompletionRequest:
        data = json_object(raw, "request")
        prompt = json_field(data, "prompt", str, "")
        options = SamplingOptions.from_options(validate_options(data.get("options")))
        fmt = data.get("format")
        if fmt == "":
            fmt = None
        if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
            raise ProtocolError("field 'format' must be null, \"json\" or a JSON schema")
        images = data.get("images") or []
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise ProtocolError("field 'images' must be a list of strings")
        stream = json_field(data, "stream", bool, True)
        tokens = None if data.get("tokens") is None else tuple(_int_list(data, "tokens"))
        top_logprobs = json_field(data, "top_logprobs", int, 0)
        check_top_logprobs(top_logprobs)
        grammar = data.get("tool_grammar")
        budget = data.get("trace_budget")
        return cls(
            prompt=prompt,
            options=options,
            format=fmt,
            images=tuple(images),
            stream=stream,
            tokens=tokens,
            logprobs=json_field(data, "logprobs", bool, False),
            top_logprobs=top_logprobs,
            truncate=json_field(data, "truncate", bool, True),
            shift=json_field(data, "shift", bool, True),
            tool_grammar=None if grammar is None else ToolCallGrammar.from_json(grammar),
            trace_budget=None if budget is None else TraceBudget.from_json(budget),
        )


@dataclass(frozen=True, slots=True)
class CompletionChunk:
    """One NDJSON line of generated text (never splits a UTF-8 character).

    `logprobs`, when the request asked for them, has one entry per token whose text this
    chunk completes, in order (a token whose text a stop string swallowed has none).
    """

    content: str
    logprobs: tuple[TokenLogprob, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if not self.logprobs:
            return {"content": self.content}
        return {"content": self.content, "logprobs": [lp.to_json() for lp in self.logprobs]}


@dataclass(frozen=True, slots=True)
class CompletionDone:
    """The last NDJSON line of a successful completion; durations are nanoseconds.

    `tokens` holds the prompt tokens followed by every generated token (the EOG token
    excluded), so a client can send them back as Ollama's `context`.

    `prompt_eval_count` is the whole prompt (after truncation to the context), as
    Ollama's runner reports it, whether or not a prefix came from the KV cache: clients
    bill and budget by it. `prompt_cached_count` says how many of those tokens were
    reused from the cache, and `prompt_eval_duration` is the time spent on the rest;
    `prompt_cached_source` where they came from: "slot" (a slot's KV), "host" (the
    prompt cache in RAM) or "disk" (a cache file saved at an earlier unload).

    `draft_count` and `draft_accepted_count` count the tokens speculative decoding drafted
    and the model confirmed (sent only when something was drafted; absent means 0).
    """

    done_reason: DoneReason
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    tokens: list[int] = field(default_factory=list)
    prompt_cached_count: int = 0
    prompt_cached_source: str = ""
    stop_sequence: str | None = None
    """The stop string that ended the generation (done_reason "stop"), if one did."""
    draft_count: int = 0
    draft_accepted_count: int = 0

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies `tokens` item by item (ms for a long chat).
        drafts = (
            {"draft_count": self.draft_count, "draft_accepted_count": self.draft_accepted_count}
            if self.draft_count
            else {}
        )
        return (
            {
                "done": True,
                "done_reason": self.done_reason,
                "prompt_eval_count": self.prompt_eval_count,
                "prompt_eval_duration": self.prompt_eval_duration,
                "eval_count": self.eval_count,
                "eval_duration": self.eval_duration,
                "tokens": self.tokens,
                "prompt_cached_count": self.prompt_cached_count,
                "prompt_cached_source": self.prompt_cached_source,
            }
            | drafts
            | ({} if self.stop_sequence is None else {"stop_sequence": self.stop_sequence})
        )


@dataclass(frozen=True, slots=True)
class CompletionError:
    """The last NDJSON line when generation failed after the stream had started."""

    error: str

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error}


CompletionEvent: TypeAlias = CompletionChunk | CompletionDone | CompletionError


def parse_completion_line(raw: object) -> CompletionEvent:
    """Turn one decoded NDJSON line of `POST /completion` into its event type."""
    data = json_object(raw, "completion line")
    if "error" in data:
        return CompletionError(error=str(data["error"]))
    if data.get("done"):
        reason = data.get("done_reason")
        if reason not in ("stop", "length"):
            raise ProtocolError("field 'done_reason' is invalid")
        return CompletionDone(
            done_reason=reason,
            prompt_eval_count=json_field(data, "prompt_eval_count", int, 0),
            prompt_eval_duration=json_field(data, "prompt_eval_duration", int, 0),
            eval_count=json_field(data, "eval_count", int, 0),
            eval_duration=json_field(data, "eval_duration", int, 0),
            tokens=_int_list(data, "tokens"),
            prompt_cached_count=json_field(data, "prompt_cached_count", int, 0),
            prompt_cached_source=json_field(data, "prompt_cached_source", str, ""),
            stop_sequence=json_field(data, "stop_sequence", str, None),
            draft_count=json_field(data, "draft_count", int, 0),
            draft_accepted_count=json_field(data, "draft_accepted_count", int, 0),
        )
    return CompletionChunk(
        content=json_field(data, "content", str, ""), logprobs=_logprobs(data.get("logprobs"))
    )


def _logprobs(raw: object) -> tuple[TokenLogprob, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProtocolError("field 'logprobs' must be a list")
    try:
        return tuple(TokenLogprob.from_json(item) for item in raw)
    except ValueError as exc:
        raise ProtocolError(f"field 'logprobs': {exc}") from None


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
        data = json_object(raw, "request")
        return cls(
            content=json_field(data, "content", str, ""),
            add_special=json_field(data, "add_special", bool, True),
        )


@dataclass(frozen=True, slots=True)
class TokenizeResponse:
    """The tokens; for a prompt (`add_special`), also where its special tokens end: byte
    offsets into the UTF-8 content and the token count up to each. The server cuts a
    conversation at those places without asking again (`chat.prompt`)."""

    tokens: list[int]
    cut_offsets: list[int] = field(default_factory=list)
    cut_counts: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"tokens": self.tokens}
        if self.cut_offsets:
            body["cut_offsets"], body["cut_counts"] = self.cut_offsets, self.cut_counts
        return body

    @classmethod
    def from_json(cls, raw: object) -> TokenizeResponse:
        data = json_object(raw, "response")
        offsets, counts = _int_list(data, "cut_offsets"), _int_list(data, "cut_counts")
        if len(offsets) != len(counts):
            raise ProtocolError("cut_offsets and cut_counts differ in length")
        return cls(_int_list(data, "tokens"), offsets, counts)


@dataclass(frozen=True, slots=True)
class DetokenizeRequest:
    tokens: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    @classmethod
    def from_json(cls, raw: object) -> DetokenizeRequest:
        return cls(tokens=_int_list(json_object(raw, "request"), "tokens"))


@dataclass(frozen=True, slots=True)
class DetokenizeResponse:
    content: str

    def to_json(self) -> dict[str, Any]:
        return {"content": self.content}

    @classmethod
    def from_json(cls, raw: object) -> DetokenizeResponse:
        return cls(content=json_field(json_object(raw, "response"), "content", str, ""))


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
        data = json_object(raw, "request")
        content = data.get("content", [])
        if isinstance(content, str):
            content = [content]
        if not isinstance(content, list) or not all(isinstance(c, str) for c in content):
            raise ProtocolError("field 'content' must be a string or a list of strings")
        return cls(content=list(content), truncate=json_field(data, "truncate", bool, True))


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
        data = json_object(raw, "response")
        if json_field(data, "dtype", str, EMBEDDING_DTYPE) != EMBEDDING_DTYPE:
            raise ProtocolError(f"field 'dtype' must be {EMBEDDING_DTYPE!r}")
        encoded = json_field(data, "embeddings", str, "")
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
            prompt_eval_count=json_field(data, "prompt_eval_count", int, 0),
        )
