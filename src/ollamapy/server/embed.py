"""`/api/embed` and the legacy `/api/embeddings`: texts in, vectors out.

The model is resolved and loaded like for generation (`completion.prepare` and the
scheduler); the runner returns raw vectors, which `/api/embed` L2-normalises (after
cutting them to `dimensions`, when asked) and the legacy route returns as they are.
`embed(state, body)` is also what the OpenAI `/v1/embeddings` route runs.

Vectors are float32 numpy matrices from the runner onwards (normalised in float64), and
the responses are written by orjson straight from those matrices (`http.FloatsResponse`):
formatting floats with `json.dumps` (or `%`-formats) was most of a batch's overhead.
orjson writes each float32 in its shortest form that reads back exactly, as Ollama's Go
encoder does.
"""

from __future__ import annotations

import time
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
from ollamapy.server import metrics
from ollamapy.server.completion import Prepared, prepare
from ollamapy.server.http import FloatsResponse, read_request, unless_client_leaves
from ollamapy.server.state import ServerState, state_of

Event = dict[str, Any]


Matrix = npt.NDArray[np.float32]


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


def check_finite(vectors: Matrix) -> Matrix:
    """`vectors` itself; `RunnerError` if it holds NaN or infinity, which JSON cannot hold."""
    if not np.isfinite(vectors).all():
        raise RunnerError("the model returned NaN or infinite embedding values")
    return vectors


INVALID_INPUT = "invalid input type"
"""Ollama's answer (400) to an `input` that is neither a string nor a list of strings."""


def embed_inputs(value: object) -> list[str]:
    """The texts of an `/api/embed` `input`, read as Ollama reads it.

    A string is one text (none when empty), a list must hold only strings, and a missing
    or null input is no text (the model is only loaded). Anything else is a 400 in
    Ollama's words, token ids included: Ollama's `/api/embed` takes no token arrays, and
    its `/v1/embeddings` passes `input` through unchanged, so `[1, 2]` and `[[1, 2]]` are
    refused there too (as an OpenAI error object) rather than guessed at.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise BadRequestError(INVALID_INPUT)


async def _prepare(state: ServerState, model: str, options: object, keep: object) -> Prepared:
    return await run_in_threadpool(prepare, state, model, options, keep)


async def embed(state: ServerState, body: EmbedRequest) -> Event:
    """The native `/api/embed` result for `body` (also used by `/v1/embeddings`)."""
    if body.dimensions is not None and body.dimensions < 0:
        raise BadRequestError("dimensions must be a positive number")
    texts = embed_inputs(body.input)  # before the model is looked up, as in Ollama
    prepared = await _prepare(state, body.model, body.options, body.keep_alive)
    if not texts:
        await state.scheduler.load(prepared.load, prepared.keep_alive)
        return {"model": body.model, "embeddings": []}
    started = time.perf_counter_ns()
    async with state.scheduler.use(prepared.load, prepared.keep_alive) as entry:
        load_duration = time.perf_counter_ns() - started
        runner: ProcessRunner = entry.runner
        vectors, count = await runner.embed(texts, body.truncate)
    metrics.note_prompt_tokens(count)
    return {
        "model": body.model,
        "embeddings": check_finite(shape_vectors(vectors, body.dimensions)),
        "total_duration": time.perf_counter_ns() - started,
        "load_duration": load_duration,
        "prompt_eval_count": count,
    }


async def embed_route(request: Request) -> Response:
    body = await read_request(request, EmbedRequest)
    return FloatsResponse(await unless_client_leaves(request, embed(state_of(request), body)))


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
        vectors, count = await runner.embed([body.prompt], True)
    metrics.note_prompt_tokens(count)
    return FloatsResponse({"embedding": check_finite(vectors[0])})


ROUTES = [
    Route("/api/embed", embed_route, methods=["POST"]),
    Route("/api/embeddings", embeddings_route, methods=["POST"]),
]
