"""Routes that manage installed models: tags, show, copy, delete, blobs, create, version."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ollamapy import OLLAMA_VERSION, __version__, gguf
from ollamapy.api.types import CopyRequest, CreateRequest, DeleteRequest, ShowRequest
from ollamapy.chat.harmony import FAMILIES as HARMONY
from ollamapy.chat.thinking import tags_for_text
from ollamapy.errors import BadRequestError, ModelNotFoundError, NotFoundError
from ollamapy.modelfile import Message, Modelfile
from ollamapy.server.create import create_model
from ollamapy.server.http import last_event, read_request, stream_events
from ollamapy.server.resolved import ResolvedModel, resolve
from ollamapy.server.state import ServerState, state_of
from ollamapy.store import ModelEntry
from ollamapy.template import Template
from ollamapy.types import Digest, ModelName

Event = dict[str, Any]


def details(model_config: Any, parent: str = "") -> dict[str, Any]:
    """The `details` object of /api/tags, /api/show and /api/ps."""
    return {
        "parent_model": parent,
        "format": model_config.model_format or "gguf",
        "family": model_config.model_family,
        "families": list(model_config.model_families) or None,
        "parameter_size": model_config.model_type,
        "quantization_level": model_config.file_type,
    }


def rfc3339(moment: datetime) -> str:
    return moment.astimezone().isoformat()


async def version(request: Request) -> Response:
    """The Ollama version whose API this is (what clients compare), and our own."""
    return JSONResponse({"version": OLLAMA_VERSION, "ollamapy_version": __version__})


async def root(request: Request) -> Response:
    return Response("Ollama is running", media_type="text/plain")


async def tags(request: Request) -> Response:
    state = state_of(request)
    entries = await run_in_threadpool(state.store.list_models)
    return JSONResponse({"models": [await run_in_threadpool(_tag, state, e) for e in entries]})


def _tag(state: ServerState, entry: ModelEntry) -> dict[str, Any]:
    config = state.store.read_config(entry.manifest)
    name = entry.name.display
    return {
        "name": name,
        "model": name,
        "modified_at": rfc3339(entry.modified_at),
        "size": entry.size,
        "digest": entry.digest.hex,
        "details": details(config),
    }


async def show(request: Request) -> Response:
    body = await read_request(request, ShowRequest)
    state = state_of(request)
    name = ModelName.parse(body.model)
    model = await run_in_threadpool(resolve, state.store, name)
    return JSONResponse(await run_in_threadpool(show_model, model, body.verbose))


def show_model(model: ResolvedModel, verbose: bool) -> dict[str, Any]:
    """The /api/show body for one model."""
    info = None
    if model.model_path is not None:
        info = gguf.read_gguf(model.model_path, keep_arrays=None if verbose else 1024)
    response: dict[str, Any] = {
        "license": "\n".join(model.licenses) or None,
        "modelfile": modelfile_of(model).show(model.name.display),
        "parameters": format_parameters(model.parameters) or None,
        "template": model.template,
        "system": model.system or None,
        "details": details(model.config, model.config.base_name),
        "messages": model.messages or None,
        "model_info": info.model_info(verbose=verbose) if info is not None else None,
        "projector_info": projector_info(model, verbose),
        "capabilities": capabilities(model, info),
        "modified_at": rfc3339(datetime.now(UTC)),
    }
    return {key: value for key, value in response.items() if value is not None}


def projector_info(model: ResolvedModel, verbose: bool) -> dict[str, Any] | None:
    """The vision projector's metadata (`projector_info`), as `model_info` shows the model's."""
    if not model.projectors:
        return None
    keep = None if verbose else 1024
    return gguf.read_gguf(model.projectors[0], keep_arrays=keep).model_info(verbose=verbose)


def modelfile_of(model: ResolvedModel) -> Modelfile:
    """The Modelfile `ollama show --modelfile` prints for an installed model."""
    return Modelfile.build(
        str(model.model_path or model.name.display),
        adapters=[str(path) for path in model.adapters],
        projectors=[str(path) for path in model.projectors],
        template=model.template or None,
        system=model.system or None,
        parameters=dict(sorted(model.parameters.items())),
        license=model.licenses,
        messages=[Message(str(m.get("role")), str(m.get("content"))) for m in model.messages],
    )


def format_parameters(parameters: dict[str, Any]) -> str:
    """Ollama's `parameters` text: `%-30s %#v` per value, one line each."""
    lines = []
    for key, value in sorted(parameters.items()):
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {_go_value(item)}")
    return "\n".join(lines)


def _go_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return str(value)


def capabilities(model: ResolvedModel, info: gguf.GGUFInfo | None) -> list[str]:
    """What a model can do, as Ollama derives it from its template and metadata."""
    found: list[str] = []
    if info is not None and info.pooling_type is not None:
        found.append("embedding")
    else:
        found.append("completion")
    if model.template:
        template = Template.parse(model.template, "capabilities")
        found += [cap for cap, field in _TEMPLATE_CAPABILITIES if template.uses(field)]
    if tags_for_text(model.template) is not None or model.config.model_family in HARMONY:
        found.append("thinking")  # Ollama: tags its InferTags finds, or a gpt-oss model
    if model.projectors:
        found.append("vision")
    return found


_TEMPLATE_CAPABILITIES = (("tools", "Tools"), ("insert", "Suffix"))


async def copy(request: Request) -> Response:
    body = await read_request(request, CopyRequest)
    source, destination = ModelName.parse(body.source), ModelName.parse(body.destination)
    await run_in_threadpool(state_of(request).store.copy, source, destination)
    return Response(status_code=200)


async def delete(request: Request) -> Response:
    body = await read_request(request, DeleteRequest)
    state = state_of(request)
    name = ModelName.parse(body.model)
    try:
        await run_in_threadpool(state.store.delete, name, noprune=state.config.noprune)
    except ModelNotFoundError:
        raise ModelNotFoundError(body.model) from None
    return Response(status_code=200)


async def head_blob(request: Request) -> Response:
    digest = Digest.parse(request.path_params["digest"])
    if not state_of(request).store.has_blob(digest):
        raise NotFoundError(f"blob {digest} not found")
    return Response(status_code=200)


async def post_blob(request: Request) -> Response:
    digest = Digest.parse(request.path_params["digest"])
    store = state_of(request).store
    if store.has_blob(digest):
        return Response(status_code=200)
    await run_in_threadpool(store.write_blob, _sync_body(request), digest)
    return Response(status_code=201)


def _sync_body(request: Request) -> Iterator[bytes]:
    """Bridge the async request body into the store's sync writer (runs in a thread)."""
    loop = asyncio.get_running_loop()
    stream = request.stream()

    def chunks() -> Iterator[bytes]:
        while True:
            try:
                chunk = asyncio.run_coroutine_threadsafe(_next(stream), loop).result()
            except StopAsyncIteration:
                return
            yield chunk

    return chunks()


async def _next(stream: AsyncIterator[bytes]) -> bytes:
    return await anext(stream)


async def create(request: Request) -> Response:
    body = await read_request(request, CreateRequest)
    store = state_of(request).store
    events = await run_in_threadpool(create_model, store, body)
    progress = iterate_in_threadpool(events)
    return await (stream_events(progress) if body.stream else last_event(progress))


ROUTES = [
    Route("/", root, methods=["GET", "HEAD"]),
    Route("/api/version", version, methods=["GET"]),
    Route("/api/tags", tags, methods=["GET"]),
    Route("/api/show", show, methods=["POST"]),
    Route("/api/copy", copy, methods=["POST"]),
    Route("/api/delete", delete, methods=["DELETE"]),
    Route("/api/blobs/{digest}", head_blob, methods=["HEAD"]),
    Route("/api/blobs/{digest}", post_blob, methods=["POST"]),
    Route("/api/create", create, methods=["POST"]),
]

__all__ = ["ROUTES", "BadRequestError", "details", "rfc3339"]
