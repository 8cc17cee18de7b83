"""`GET /openapi.json`: a valid OpenAPI 3.1 document generated from the routes and their
wire models, with each operation's errors in its API's own shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from starlette.responses import Response
from starlette.routing import Route

from ollamapy.api.types import ChatRequest
from ollamapy.server.openapi import (
    NATIVE_ERROR,
    Contract,
    ErrorShape,
    Registry,
    document,
)
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedServer]:
    yield from serve_scripted(tmp_path_factory.mktemp("openapi"), Script())


@pytest.fixture(scope="module")
def spec(server: ScriptedServer) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_every_route_of_the_app_is_documented(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    assert set(paths["/api/chat"]) == {"post"}
    assert set(paths["/api/blobs/{digest}"]) == {"head", "post"}
    assert set(paths["/"]) == {"get", "head"}
    assert "/v1/models/{model}" in paths and "/metrics" in paths
    assert not any(path.startswith("/{") for path in paths)  # the catch-all 404 is no route


def test_request_bodies_are_the_wire_models(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/chat"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ChatRequest"}
    chat = spec["components"]["schemas"]["ChatRequest"]
    assert chat["required"] == ["model"]
    assert {"messages", "tools", "_debug_render_only"} <= set(chat["properties"])
    openai = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert openai["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ChatCompletionRequest"
    )


def error_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path][method]["responses"][str(status)]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/api/chat", {"model": "missing"}, "Error"),
        ("/api/chat", {"model": 3}, "Error"),
        ("/v1/chat/completions", {"model": "missing", "messages": []}, "OpenAIError"),
        ("/v1/chat/completions", {"messages": 1}, "OpenAIError"),
    ],
    ids=["native-404", "native-400", "openai-404", "openai-400"],
)
def test_errors_come_in_the_documented_shape(
    server: ScriptedServer, spec: dict[str, Any], path: str, body: dict[str, Any], shape: str
) -> None:
    answer = httpx.post(f"{server.url}{path}", json=body)
    assert answer.status_code in (400, 404)
    schema = error_schema(spec, path, "post", answer.status_code)
    assert schema["$ref"] == f"#/components/schemas/{shape}"
    resolver_root = {"components": spec["components"], **schema}
    jsonschema.validate(answer.json(), resolver_root)


def test_a_route_without_a_contract_is_documented_generically_and_can_register_one() -> None:
    class MessagesRequest(BaseModel):
        model: str
        max_tokens: int

    async def endpoint(request: Any) -> Response:
        return Response()

    anthropic = ErrorShape("AnthropicError", {"type": "object", "required": ["type", "error"]})
    routes = [Route("/v1/messages", endpoint, methods=["POST"])]
    registry = Registry()
    generic = document(routes, registry)["paths"]["/v1/messages"]["post"]
    assert "requestBody" not in generic
    assert "Error" in generic["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    registry.register("POST", "/v1/messages", Contract(MessagesRequest, "Anthropic messages"))
    registry.register_error_shape("/v1/messages", anthropic)
    spec = document(routes, registry)
    validate(spec)
    operation = spec["paths"]["/v1/messages"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MessagesRequest"
    }
    assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AnthropicError"
    }
    assert spec["components"]["schemas"]["AnthropicError"] == anthropic.schema
    assert NATIVE_ERROR.name in spec["components"]["schemas"]


def test_the_model_schema_round_trips_a_real_request(spec: dict[str, Any]) -> None:
    request = ChatRequest(model=MODEL, messages=[]).to_body()
    schema = {**spec["components"]["schemas"]["ChatRequest"], "components": spec["components"]}
    jsonschema.validate(request, schema)
