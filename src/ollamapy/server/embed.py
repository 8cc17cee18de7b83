"""`/api/embed` and the legacy `/api/embeddings`: texts in, vectors out.

The model is resolved and loaded like for generation (`inference.prepare` and the
scheduler); the runner returns raw vectors, which `/api/embed` L2-normalises (after
cutting them to `dimensions`, when asked) and the legacy route returns as they are.
`embed(state, body)` is also what the OpenAI `/v1/embeddings` route runs.

Vectors are float32 numpy matrices from the runner onwards (normalised in float64), and
the responses write them with `json_floats`, one `%`-format per row, instead of
`json.dumps` of Python floats: formatting floats was most of a batch's overhead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ollamapy.api.types import EmbeddingsRequest, EmbedRequest
from ollamapy.errors import BadRequestError, RunnerError
from ollamapy.llm import ProcessRunner
from ollamapy.server.http import read_request
from ollamapy.server.inference import Prepared, prepare
from ollamapy.server.state import ServerState, state_of

Event = dict[str, Any]


Matrix = npt.NDArray[np.float32]

_JSON_FLOAT = "%.9g"
"""Nine significant digits: enough for every float32 to read back exactly (like Go's
encoder, which writes the shortest such text; this may be a digit or two longer), and
several times faster to write than `json.dumps` of the same values as Python floats."""


def normalize(vectors: npt.ArrayLike) -> Matrix:
    """Each row of `vectors` scaled to unit L2 norm (a zero row stays as it is).

    The norm and the division are done in float64, the result is float32.
    """
    matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))[:, None]
    np.divide(matrix, norms, out=matrix, where=norms != 0.0)
    return matrix.astype(np.float32)


def shape_vectors(vectors: npt.ArrayLike, dimensions: int | None) -> Matrix:
    """Ollama's rule: cut each row to `dimensions` when smaller than it, then normalise."""
    matrix = np.atleast_2d(np.asarray(vectors))
    if dimensions is not None and 0 < dimensions < matrix.shape[1]:
        matrix = matrix[:, :dimensions]
    return normalize(matrix)


def json_floats(values: npt.NDArray[np.floating[Any]]) -> str:
    """JSON text of a vector (1-D) or a list of vectors (2-D), float32 precision.

    Raises `RunnerError` for NaN or infinity, which JSON cannot hold.
    """
    if values.ndim not in (1, 2):
        raise ValueError("expected a vector or a matrix")
    if not np.isfinite(values).all():
        raise RunnerError("the model returned NaN or infinite embedding values")
    if values.ndim == 1:
        return "[" + ",".join([_JSON_FLOAT] * values.shape[0]) % tuple(values.tolist()) + "]"
    row = "[" + ",".join([_JSON_FLOAT] * values.shape[1]) + "]"
    return "[" + ",".join([row % tuple(r) for r in values.tolist()]) + "]"


def render(event: Mapping[str, Any], key: str) -> bytes:
    """`event` as compact JSON, with its `key` (an array of floats) written by `json_floats`."""
    parts: list[str] = []
    for name, value in event.items():
        if name == key and isinstance(value, np.ndarray):
            text = json_floats(value)
        else:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        parts.append(f"{json.dumps(name, ensure_ascii=False)}:{text}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


class FloatsResponse(Response):
    """A JSON response whose big float array is formatted by `json_floats`."""

    media_type = "application/json"

    def __init__(self, event: Mapping[str, Any], key: str) -> None:
        super().__init__(render(event, key))


def _inputs(value: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    """One entry per input: a text, or a list of token ids."""
    if isinstance(value, str):
        return [value] if value else []
    if not value:
        return []
    ints = [v for v in value if isinstance(v, int)]
    if len(ints) == len(value):
        return [ints]
    return [v for v in value if not isinstance(v, int)]


async def _texts(runner: ProcessRunner, inputs: list[str | list[int]]) -> list[str]:
    texts: list[str] = []
    for item in inputs:
        texts.append(item if isinstance(item, str) else await runner.detokenize(item))
    return texts


async def _prepare(state: ServerState, model: str, options: object, keep: object) -> Prepared:
    return await run_in_threadpool(prepare, state, model, options, keep)


async def embed(state: ServerState, body: EmbedRequest) -> Event:
    """The native `/api/embed` result for `body` (also used by `/v1/embeddings`)."""
    if body.dimensions is not None and body.dimensions < 0:
        raise BadRequestError("dimensions must be a positive number")
    inputs = _inputs(body.input)
    prepared = await _prepare(state, body.model, body.options, body.keep_alive)
    if not inputs:
        await state.scheduler.load(prepared.load, prepared.keep_alive)
        return {"model": body.model, "embeddings": []}
    started = time.perf_counter_ns()
    async with state.scheduler.use(prepared.load, prepared.keep_alive) as entry:
        load_duration = time.perf_counter_ns() - started
        runner: ProcessRunner = entry.runner
        vectors, count = await runner.embed(await _texts(runner, inputs), body.truncate)
    return {
        "model": body.model,
        "embeddings": shape_vectors(vectors, body.dimensions),
        "total_duration": time.perf_counter_ns() - started,
        "load_duration": load_duration,
        "prompt_eval_count": count,
    }


async def embed_route(request: Request) -> Response:
    body = await read_request(request, EmbedRequest)
    return FloatsResponse(await embed(state_of(request), body), "embeddings")


async def embeddings_route(request: Request) -> Response:
    """Legacy `/api/embeddings`: one prompt, one raw (unnormalised) vector."""
    body = await read_request(request, EmbeddingsRequest)
    state = state_of(request)
    prepared = await _prepare(state, body.model, body.options, body.keep_alive)
    if not body.prompt:
        await state.scheduler.load(prepared.load, prepared.keep_alive)
        return JSONResponse({"embedding": []})
    async with state.scheduler.use(prepared.load, prepared.keep_alive) as entry:
        runner: ProcessRunner = entry.runner
        vectors, _count = await runner.embed([body.prompt], True)
    return FloatsResponse({"embedding": vectors[0]}, "embedding")


ROUTES = [
    Route("/api/embed", embed_route, methods=["POST"]),
    Route("/api/embeddings", embeddings_route, methods=["POST"]),
]
