"""What each route needs from a key: its scope, and where its model name comes from.

One table (`ROUTE_RULES`) maps every path to a `RouteRule`; a path not in it needs the
`manage` scope, so a route someone adds later is closed to narrow keys until it is listed.
Model patterns are shell globs on model names, matched case-insensitively like the names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ollamapy.errors import BadRequestError, InvalidNameError
from ollamapy.types.names import ModelName


class Scope(StrEnum):
    """What a key may do. `all` covers everything; `manage` also covers `metrics`."""

    GENERATE = "generate"
    EMBED = "embed"
    MANAGE = "manage"
    METRICS = "metrics"
    ALL = "all"


_IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.ALL: frozenset(Scope),
    Scope.MANAGE: frozenset({Scope.MANAGE, Scope.METRICS}),
}


def covers(granted: Iterable[Scope], needed: Scope | None) -> bool:
    """Whether a key holding `granted` may use a route that needs `needed` (None: any key)."""
    if needed is None:
        return True
    return any(needed in _IMPLIED.get(scope, frozenset({scope})) for scope in granted)


def parse_scopes(text: str) -> frozenset[Scope]:
    """`generate,embed` -> {GENERATE, EMBED}; an unknown name is a 400 naming the choices."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise BadRequestError("no scope given")
    scopes: set[Scope] = set()
    for name in names:
        try:
            scopes.add(Scope(name))
        except ValueError:
            choices = "|".join(scope.value for scope in Scope)
            raise BadRequestError(f"unknown scope {name!r} (choose {choices})") from None
    return frozenset(scopes)


class ModelSource(StrEnum):
    """Where a route's model names are: the JSON body, the path's tail, or nowhere."""

    BODY = "body"
    PATH = "path"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """`scope` None means any valid key; `models` says where to find the names to check."""

    scope: Scope | None
    models: ModelSource = ModelSource.NONE


_ANY = RouteRule(None)
_ANY_MODEL = RouteRule(None, ModelSource.BODY)
_GENERATE = RouteRule(Scope.GENERATE, ModelSource.BODY)
_EMBED = RouteRule(Scope.EMBED, ModelSource.BODY)
_MANAGE = RouteRule(Scope.MANAGE, ModelSource.BODY)

ROUTE_RULES: dict[str, RouteRule] = {
    "/": _ANY,
    "/api/version": _ANY,
    "/api/tags": _ANY,
    "/api/ps": _ANY,
    "/api/show": _ANY_MODEL,
    "/api/generate": _GENERATE,
    "/api/chat": _GENERATE,
    "/v1/chat/completions": _GENERATE,
    "/v1/completions": _GENERATE,
    "/v1/messages": _GENERATE,
    "/v1/messages/count_tokens": _GENERATE,
    "/v1/responses": _GENERATE,
    "/v1/conversations": RouteRule(Scope.GENERATE),
    "/api/embed": _EMBED,
    "/api/embeddings": _EMBED,
    "/v1/embeddings": _EMBED,
    "/v1/models": _ANY,
    "/api/pull": _MANAGE,
    "/api/push": _MANAGE,
    "/api/create": _MANAGE,
    "/api/copy": _MANAGE,
    "/api/delete": _MANAGE,
    "/metrics": RouteRule(Scope.METRICS),
    "/openapi.json": _ANY,
}
"""Exact paths. `ollama stop` is a generate with keep_alive 0, so it needs `generate`."""

_PREFIX_RULES: tuple[tuple[str, RouteRule], ...] = (
    ("/v1/models/", RouteRule(None, ModelSource.PATH)),
    ("/v1/responses/", RouteRule(Scope.GENERATE)),
    ("/v1/conversations/", RouteRule(Scope.GENERATE)),
    ("/api/blobs/", RouteRule(Scope.MANAGE)),
)
_UNLISTED = _MANAGE


_PUBLIC_METHODS = frozenset({"GET", "HEAD"})
_PUBLIC_PATHS = frozenset({"/", "/ui"})
_PUBLIC_PREFIXES = ("/ui/",)


def is_public(method: str, path: str) -> bool:
    """Reads that need no key: `GET /` and `HEAD /` (Ollama's "Ollama is running", what
    clients probe), and the web UI's static files under `/ui` (the page holds no data; it asks
    for a key when the API answers 401 and sends it with every API call)."""
    if method not in _PUBLIC_METHODS:
        return False
    return path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)


def rule_for(path: str) -> RouteRule:
    """The rule for a request path; unlisted paths need `manage` (closed by default)."""
    rule = ROUTE_RULES.get(path)
    if rule is not None:
        return rule
    for prefix, prefixed in _PREFIX_RULES:
        if path.startswith(prefix):
            return prefixed
    return _UNLISTED


def path_model(path: str) -> str:
    """The model named by a path rule's tail: `/v1/models/me/mine:1b` -> `me/mine:1b`."""
    for prefix, rule in _PREFIX_RULES:
        if rule.models is ModelSource.PATH and path.startswith(prefix):
            return path[len(prefix) :]
    return ""


def model_allowed(patterns: Iterable[str], name: str) -> bool:
    """Whether `name` matches one of `patterns` (no patterns: every model).

    A pattern with a `:` matches the whole `name:tag`; one without matches the name with any
    tag (`llama3*` admits `llama3.2:1b`). Names are compared in their short form (`ollama
    list`'s), so `registry.ollama.ai/library/qwen3` is `qwen3:latest`. A name that does not
    parse is matched as written, so it can only get through a pattern that names it.
    """
    patterns = [pattern.strip().lower() for pattern in patterns if pattern.strip()]
    if not patterns:
        return True
    full, bare = _forms(name)
    return any(fnmatch.fnmatchcase(full if ":" in p else bare, p) for p in patterns)


def _forms(name: str) -> tuple[str, str]:
    try:
        parsed = ModelName.parse(name)
    except InvalidNameError:
        raw = name.strip().lower()
        return raw, raw
    full = parsed.display.lower()
    return full, full.rsplit(":", 1)[0]
