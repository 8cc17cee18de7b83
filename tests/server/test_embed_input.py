"""What an embedding request may carry as its input, checked before any model is looked up.

Ollama's `/api/embed` takes a string or a list of strings and answers anything else with
400 `invalid input type` before it looks for the model; its `/v1/embeddings` hands
`input` to that handler unchanged, so token arrays (valid in OpenAI's API) are refused
there too, as an OpenAI error object. No model is needed: a valid input reaches the model
lookup (404), an invalid one never does.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.conftest import LiveServer

TOKEN_ARRAYS_AND_OTHER_SHAPES = [
    pytest.param([1, 2], id="token-ids"),
    pytest.param([[1, 2], [3]], id="token-id-batches"),
    pytest.param(["a", 2], id="mixed"),
    pytest.param(["a", None], id="null-item"),
    pytest.param([["a"]], id="nested-strings"),
    pytest.param(5, id="number"),
    pytest.param(True, id="bool"),
    pytest.param({"text": "a"}, id="object"),
]


def post(server: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


@pytest.mark.parametrize("value", TOKEN_ARRAYS_AND_OTHER_SHAPES)
def test_embed_refuses_anything_but_text_with_ollamas_message(
    live_server: LiveServer, value: Any
) -> None:
    response = post(live_server, "/api/embed", {"model": "all-minilm", "input": value})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid input type"}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a sentence", id="string"),
        pytest.param(["one", "two"], id="strings"),
        pytest.param([], id="empty-list"),
        pytest.param("", id="empty-string"),
        pytest.param(None, id="null"),
    ],
)
def test_embed_takes_text_on_to_the_model(live_server: LiveServer, value: Any) -> None:
    response = post(live_server, "/api/embed", {"model": "all-minilm", "input": value})
    assert response.status_code == 404
    assert "not found" in response.json()["error"]


@pytest.mark.parametrize(
    "value",
    [pytest.param([1, 2], id="token-ids"), pytest.param([[1, 2]], id="token-id-batch")],
)
def test_openai_embeddings_refuse_token_arrays_as_openai_errors(
    live_server: LiveServer, value: Any
) -> None:
    response = post(live_server, "/v1/embeddings", {"model": "all-minilm", "input": value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "invalid input type"
    assert error["type"] == "invalid_request_error"


def test_legacy_embeddings_prompt_must_be_a_string(live_server: LiveServer) -> None:
    response = post(live_server, "/api/embeddings", {"model": "all-minilm", "prompt": [1, 2]})
    assert response.status_code == 400
    assert "prompt" in response.json()["error"]
