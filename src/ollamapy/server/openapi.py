"""`GET /openapi.json`: an OpenAPI 3.1 document of the app's routes, built from its wire models.

The document is generated, never written by hand: its paths are the app's Starlette routes
(so a route added anywhere shows up, at least with a generic body), and what each
operation reads and answers comes from a registry of `Contract`s, keyed by method and
route template. The native and `/v1` routes are registered below; a new route module
registers its own at import time:

    openapi.register("POST", "/v1/messages", Contract(MessagesRequest, streams=SSE))
    openapi.register_error_shape("/v1/messages", ANTHROPIC_ERROR_SHAPE)

Request bodies are the pydantic wire models (`api.types`, `openai.wire`), turned into JSON
Schema 2020-12 (what OpenAPI 3.1 uses) in one pass so shared models are defined once.
Every operation documents the errors it can answer, in its API's own shape: the longest
registered path prefix decides (`{"error": "..."}` for the native API, OpenAI's error
objects under `/v1`). Answers on success are documented by media type only (the routes
build them as dicts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ollamapy import __version__
from ollamapy.api import types as native
from ollamapy.openai import wire as openai

Json = dict[str, Any]

JSON = "application/json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
TEXT = "text/plain"
BYTES = "application/octet-stream"

ERROR_STATUSES = (400, 401, 403, 404, 405, 500, 503)
"""What any route may answer besides success: a bad body, a missing or refused key, a
foreign host or origin (the edge guard), an unknown model, a wrong method, a failure, a
full queue or a shutdown."""
EDGE_STATUSES = (403, 405)
"""Answered by the app's edge (guard, method check) in the native shape, whatever the API."""


@dataclass(frozen=True)
class ErrorShape:
    """How an API words its errors: a named JSON schema."""

    name: str
    schema: Json


NATIVE_ERROR = ErrorShape(
    "Error",
    {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
)
OPENAI_ERROR = ErrorShape(
    "OpenAIError",
    {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
                "required": ["message", "type"],
            }
        },
        "required": ["error"],
    },
)


@dataclass(frozen=True)
class Contract:
    """What one operation reads and answers.

    `request`: its JSON body's wire model (None: no JSON body). `answers`: the media types
    of a success (an empty tuple: no body). `streams`: the media type it streams in when
    asked to (`stream: true`), besides `answers`. `success`: the statuses of a success.
    """

    request: type[BaseModel] | None = None
    summary: str = ""
    answers: tuple[str, ...] = (JSON,)
    streams: str | None = None
    success: tuple[int, ...] = (200,)
    raw_body: bool = False
    """The body is raw bytes (a blob upload), not JSON."""


GENERIC = Contract(summary="(no contract registered)", answers=("*/*",))


@dataclass
class Registry:
    """Contracts by (method, route template), error shapes by path prefix."""

    contracts: dict[tuple[str, str], Contract] = field(default_factory=dict)
    error_shapes: dict[str, ErrorShape] = field(default_factory=dict)

    def register(self, method: str, path: str, contract: Contract) -> None:
        self.contracts[(method.upper(), path)] = contract

    def register_error_shape(self, prefix: str, shape: ErrorShape) -> None:
        self.error_shapes[prefix] = shape

    def error_shape(self, path: str) -> ErrorShape:
        matches = [prefix for prefix in self.error_shapes if path.startswith(prefix)]
        return self.error_shapes[max(matches, key=len)] if matches else NATIVE_ERROR


REGISTRY = Registry()
register = REGISTRY.register
register_error_shape = REGISTRY.register_error_shape


# ----------------------------------------------------------------------------- the document


def document(routes: Sequence[BaseRoute], registry: Registry = REGISTRY) -> Json:
    """The OpenAPI 3.1 document for these routes."""
    operations = list(_operations(routes, registry))
    models = sorted(
        {c.request for _, _, c in operations if c.request is not None}, key=lambda m: m.__name__
    )
    refs, defs = _schemas(models)
    shapes = [NATIVE_ERROR, *(registry.error_shape(path) for path, _, _ in operations)]
    schemas = {**defs, **{shape.name: shape.schema for shape in shapes}}
    paths: Json = {}
    for path, method, contract in operations:
        operation = _operation(path, method, contract, refs, registry.error_shape(path))
        paths.setdefault(_openapi_path(path), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ollamapy",
            "version": __version__,
            "description": "Ollama's REST API (native, and OpenAI-compatible under /v1).",
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def _operations(
    routes: Iterable[BaseRoute], registry: Registry
) -> Iterable[tuple[str, str, Contract]]:
    """(template, method, contract) for every plain route; Starlette's implied HEAD of a
    GET route and the catch-all 404 route are left out."""
    for route in routes:
        if not isinstance(route, Route) or route.path.startswith("/{"):
            continue
        methods = sorted(route.methods or ())
        for method in methods:
            implied_head = method == "HEAD" and "GET" in methods
            if implied_head and ("HEAD", route.path) not in registry.contracts:
                continue
            yield route.path, method, registry.contracts.get((method, route.path), GENERIC)


def _schemas(models: Sequence[type[BaseModel]]) -> tuple[dict[type[BaseModel], Json], Json]:
    """Each model's `$ref`, and every schema they need, named once (clashing names are
    qualified by pydantic)."""
    if not models:
        return {}, {}
    keys, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    refs = {model: keys[(model, "validation")] for model in models}
    return refs, top.get("$defs", {})


_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _openapi_path(template: str) -> str:
    """Starlette's `{model:path}` is OpenAPI's `{model}`."""
    return _PARAM.sub(r"{\1}", template)


def _operation(
    path: str,
    method: str,
    contract: Contract,
    refs: dict[type[BaseModel], Json],
    shape: ErrorShape,
) -> Json:
    slug = _PARAM.sub(r"_\1", path).replace("/", "_").replace(".", "_")
    operation: Json = {
        "operationId": f"{method.lower()}{slug}",
        "responses": _responses(contract, shape),
    }
    if contract.summary:
        operation["summary"] = contract.summary
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    if parameters:
        operation["parameters"] = parameters
    if contract.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": refs[contract.request]}},
        }
    elif contract.raw_body:
        operation["requestBody"] = {
            "required": True,
            "content": {BYTES: {"schema": {"type": "string", "format": "binary"}}},
        }
    return operation


def _responses(contract: Contract, shape: ErrorShape) -> Json:
    media = [*contract.answers, *([contract.streams] if contract.streams else [])]
    success: Json = {"description": "Success"}
    if media:
        success["content"] = {kind: {} for kind in media}
    responses: Json = {str(status): success for status in contract.success}
    for status in ERROR_STATUSES:
        schema: Json = {"$ref": f"#/components/schemas/{shape.name}"}
        if status in EDGE_STATUSES and shape.name != NATIVE_ERROR.name:
            schema = {"anyOf": [schema, {"$ref": f"#/components/schemas/{NATIVE_ERROR.name}"}]}
        responses[str(status)] = {
            "description": f"Error ({shape.name})",
            "content": {JSON: {"schema": schema}},
        }
    return responses


async def openapi_route(request: Request) -> Response:
    """This app's OpenAPI document (built once per app, on first request)."""
    state = request.app.state
    cached: Json | None = getattr(state, "openapi", None)
    if cached is None:
        cached = document(request.app.routes)
        state.openapi = cached
    return JSONResponse(cached)


ROUTES = [Route("/openapi.json", openapi_route, methods=["GET"])]


# ----------------------------------------------------------------------------- contracts


def _register_builtin() -> None:
    """The native API's and the `/v1` layer's contracts."""
    register_error_shape("/", NATIVE_ERROR)
    register_error_shape("/v1/", OPENAI_ERROR)
    register("GET", "/", Contract(summary="Is the server running", answers=(TEXT,)))
    register("HEAD", "/", Contract(summary="Is the server running", answers=()))
    register("GET", "/api/version", Contract(summary="Server version"))
    register("GET", "/api/tags", Contract(summary="List installed models"))
    register("GET", "/api/ps", Contract(summary="List loaded and loading models"))
    register("POST", "/api/show", Contract(native.ShowRequest, "Show a model"))
    register("POST", "/api/copy", Contract(native.CopyRequest, "Copy a model", answers=()))
    register("DELETE", "/api/delete", Contract(native.DeleteRequest, "Delete a model", answers=()))
    blob = Contract(summary="Is a blob present", answers=())
    register("HEAD", "/api/blobs/{digest}", blob)
    upload = Contract(summary="Upload a blob", answers=(), success=(200, 201), raw_body=True)
    register("POST", "/api/blobs/{digest}", upload)
    for path, model, summary in (
        ("/api/create", native.CreateRequest, "Create a model"),
        ("/api/pull", native.PullRequest, "Pull a model"),
        ("/api/push", native.PushRequest, "Push a model"),
        ("/api/generate", native.GenerateRequest, "Generate a completion"),
        ("/api/chat", native.ChatRequest, "Generate a chat message"),
    ):
        register("POST", path, Contract(model, summary, streams=NDJSON))
    register("POST", "/api/embed", Contract(native.EmbedRequest, "Embed texts"))
    register("POST", "/api/embeddings", Contract(native.EmbeddingsRequest, "Embed (legacy)"))
    register("GET", "/metrics", Contract(summary="Prometheus metrics", answers=(TEXT,)))
    register("GET", "/openapi.json", Contract(summary="This document"))
    chat = Contract(openai.ChatCompletionRequest, "OpenAI chat completion", streams=SSE)
    register("POST", "/v1/chat/completions", chat)
    completion = Contract(openai.CompletionRequest, "OpenAI completion", streams=SSE)
    register("POST", "/v1/completions", completion)
    register("GET", "/v1/models", Contract(summary="OpenAI model list"))
    register("GET", "/v1/models/{model:path}", Contract(summary="OpenAI model"))
    embeddings = Contract(openai.EmbeddingRequest, "OpenAI embeddings")
    register("POST", "/v1/embeddings", embeddings)


_register_builtin()
