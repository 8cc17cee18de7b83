"""What each route needs (the one table), model patterns, scopes and refusal shapes."""

from __future__ import annotations

import json

import pytest

from ollamapy.auth import ROUTE_RULES, ModelSource, Scope, model_allowed, parse_scopes, rule_for
from ollamapy.auth.replies import dialect_of, refusal_body
from ollamapy.auth.scopes import covers, is_public, path_model
from ollamapy.errors import BadRequestError

ROUTES = [
    ("/api/generate", Scope.GENERATE, ModelSource.BODY),
    ("/api/chat", Scope.GENERATE, ModelSource.BODY),
    ("/v1/chat/completions", Scope.GENERATE, ModelSource.BODY),
    ("/v1/completions", Scope.GENERATE, ModelSource.BODY),
    ("/v1/messages", Scope.GENERATE, ModelSource.BODY),
    ("/v1/responses", Scope.GENERATE, ModelSource.BODY),
    ("/v1/responses/resp_1/input_items", Scope.GENERATE, ModelSource.NONE),
    ("/v1/conversations", Scope.GENERATE, ModelSource.NONE),
    ("/v1/conversations/conv_1", Scope.GENERATE, ModelSource.NONE),
    ("/api/embed", Scope.EMBED, ModelSource.BODY),
    ("/api/embeddings", Scope.EMBED, ModelSource.BODY),
    ("/v1/embeddings", Scope.EMBED, ModelSource.BODY),
    ("/api/pull", Scope.MANAGE, ModelSource.BODY),
    ("/api/push", Scope.MANAGE, ModelSource.BODY),
    ("/api/create", Scope.MANAGE, ModelSource.BODY),
    ("/api/copy", Scope.MANAGE, ModelSource.BODY),
    ("/api/delete", Scope.MANAGE, ModelSource.BODY),
    ("/api/blobs/sha256:00", Scope.MANAGE, ModelSource.NONE),
    ("/metrics", Scope.METRICS, ModelSource.NONE),
    ("/api/tags", None, ModelSource.NONE),
    ("/api/ps", None, ModelSource.NONE),
    ("/api/version", None, ModelSource.NONE),
    ("/api/show", None, ModelSource.BODY),
    ("/v1/models", None, ModelSource.NONE),
    ("/v1/models/me/mine:1b", None, ModelSource.PATH),
    ("/openapi.json", None, ModelSource.NONE),
    ("/api/something-new", Scope.MANAGE, ModelSource.BODY),
    ("/API/generate", Scope.MANAGE, ModelSource.BODY),
]


@pytest.mark.parametrize(("path", "scope", "models"), ROUTES, ids=[r[0] for r in ROUTES])
def test_each_route_needs_its_scope(path: str, scope: Scope | None, models: ModelSource) -> None:
    rule = rule_for(path)
    assert (rule.scope, rule.models) == (scope, models)


def test_every_listed_route_is_in_the_table_test() -> None:
    assert set(ROUTE_RULES) - {path for path, _, _ in ROUTES} <= {
        "/",
        "/v1/messages/count_tokens",
    }


@pytest.mark.parametrize(
    ("method", "path", "public"),
    [
        ("GET", "/", True),
        ("HEAD", "/", True),
        ("POST", "/", False),
        ("GET", "/ui", True),
        ("GET", "/ui/assets/index.js", True),
        ("POST", "/ui/x", False),
        ("GET", "/uix", False),
        ("GET", "/api/tags", False),
        ("GET", "/api/version", False),
    ],
    ids=lambda v: str(v),
)
def test_only_the_root_and_the_ui_files_are_public(method: str, path: str, public: bool) -> None:
    assert is_public(method, path) is public


def test_a_path_model_is_the_tail() -> None:
    assert path_model("/v1/models/me/mine:1b") == "me/mine:1b"


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        ({Scope.GENERATE}, Scope.GENERATE, True),
        ({Scope.GENERATE}, Scope.EMBED, False),
        ({Scope.EMBED}, Scope.GENERATE, False),
        ({Scope.GENERATE, Scope.EMBED}, Scope.EMBED, True),
        ({Scope.MANAGE}, Scope.METRICS, True),
        ({Scope.MANAGE}, Scope.GENERATE, False),
        ({Scope.METRICS}, Scope.MANAGE, False),
        ({Scope.ALL}, Scope.MANAGE, True),
        ({Scope.EMBED}, None, True),
    ],
    ids=[
        "generate-generate",
        "generate-embed",
        "embed-generate",
        "both-embed",
        "manage-metrics",
        "manage-generate",
        "metrics-manage",
        "all-manage",
        "any-key",
    ],
)
def test_scopes_cover(granted: set[Scope], needed: Scope | None, allowed: bool) -> None:
    assert covers(granted, needed) is allowed


def test_scopes_parse_from_a_comma_list() -> None:
    assert parse_scopes("generate, EMBED") == {Scope.GENERATE, Scope.EMBED}
    with pytest.raises(BadRequestError, match="unknown scope 'root'"):
        parse_scopes("generate,root")
    with pytest.raises(BadRequestError):
        parse_scopes(" , ")


@pytest.mark.parametrize(
    ("patterns", "name", "allowed"),
    [
        ((), "anything:1b", True),
        (("qwen3",), "qwen3", True),
        (("qwen3",), "qwen3:0.6b", True),
        (("qwen3",), "qwen3-coder:latest", False),
        (("qwen*",), "qwen3-coder:latest", True),
        (("qwen3:0.6b",), "qwen3:0.6b", True),
        (("qwen3:0.6b",), "qwen3", False),
        (("qwen3:*b",), "qwen3:8b", True),
        (("qwen3",), "QWEN3:8B", True),
        (("qwen3",), "registry.ollama.ai/library/qwen3:8b", True),
        (("me/*",), "me/mine", True),
        (("me/*",), "mine", False),
        (("llama*",), "other/llama3", False),
        (("smol*", "qwen*"), "qwen3", True),
        (("qwen*",), "not a name!", False),
        (("*",), "not a name!", True),
    ],
    ids=[
        "no-patterns",
        "bare-name",
        "bare-pattern-any-tag",
        "bare-pattern-is-whole-name",
        "glob",
        "exact-tag",
        "tagged-pattern-not-latest",
        "tag-glob",
        "case-insensitive",
        "long-form-name",
        "namespace-glob",
        "namespace-needed",
        "namespace-not-skipped",
        "several",
        "unparsable-refused",
        "star-admits-all",
    ],
)
def test_model_patterns(patterns: tuple[str, ...], name: str, allowed: bool) -> None:
    assert model_allowed(patterns, name) is allowed


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/api/chat", "native"),
        ("/", "native"),
        ("/v1/chat/completions", "openai"),
        ("/v1/responses", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
        ("/v1/messagesx", "openai"),
        ("/v10/x", "native"),
    ],
    ids=str,
)
def test_the_path_picks_the_error_shape(path: str, dialect: str) -> None:
    assert dialect_of(path) == dialect


def test_refusals_in_each_shape() -> None:
    assert json.loads(refusal_body("/api/chat", 401, "no")) == {"error": "no"}
    assert json.loads(refusal_body("/v1/messages", 403, "no")) == {
        "type": "error",
        "error": {"type": "permission_error", "message": "no"},
    }
    assert json.loads(refusal_body("/v1/chat/completions", 401, "no")) == {
        "error": {
            "message": "no",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    anthropic_401 = json.loads(refusal_body("/v1/messages", 401, "no"))
    assert anthropic_401["error"]["type"] == "authentication_error"
