"""API keys: the key file (`keys`), what each route needs (`scopes`), the refusal bodies in
each API's shape (`replies`) and the failed-attempt limiter (`limiter`).

Pure apart from the key file's own reads and writes: no server, store or CLI imports, so the
`ollama keys` commands and the server's middleware share it.
"""

from ollamapy.auth.keys import (
    KEY_PREFIX,
    ApiKey,
    KeyFile,
    KeyFileError,
    KeyRing,
    hash_key,
    new_secret,
    parse_expiry,
)
from ollamapy.auth.limiter import FailureLimiter
from ollamapy.auth.scopes import (
    ROUTE_RULES,
    ModelSource,
    RouteRule,
    Scope,
    model_allowed,
    parse_scopes,
    rule_for,
)

__all__ = [
    "KEY_PREFIX",
    "ROUTE_RULES",
    "ApiKey",
    "FailureLimiter",
    "KeyFile",
    "KeyFileError",
    "KeyRing",
    "ModelSource",
    "RouteRule",
    "Scope",
    "hash_key",
    "model_allowed",
    "new_secret",
    "parse_expiry",
    "parse_scopes",
    "rule_for",
]
