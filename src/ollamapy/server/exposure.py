"""What `ollama serve` checks before listening: TLS files, and who could reach it unguarded.

`prepare_to_serve` is called once at start: it returns uvicorn's certificate and key (or None, None
for plain HTTP) and logs a loud warning when the address is reachable from other machines
with no API key required, or when keys would cross the network in clear.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ollamapy.auth import KeyRing
from ollamapy.config import Config
from ollamapy.errors import BadRequestError
from ollamapy.server.auth import KeySource

log = logging.getLogger("ollamapy.server.app")

_LOOPBACK_ADDRESSES = {"127.0.0.1", "::1", "localhost"}


def prepare_to_serve(config: Config) -> tuple[str | None, str | None]:
    """Check the TLS files and log the exposure warnings; uvicorn's (certfile, keyfile)."""
    files = tls_files(config)
    warning = exposure_warning(config, KeySource(config.keys_file).current())
    if warning:
        log.warning(warning)
    if config.host.scheme == "https" and not config.tls_cert:
        log.warning("OLLAMA_HOST says https, but OLLAMA_TLS_CERT is not set: serving plain HTTP")
    if config.tls_cert:
        log.info("serving HTTPS with %s", config.tls_cert)
    return files


def tls_files(config: Config) -> tuple[str | None, str | None]:
    """uvicorn's certificate and key for `OLLAMA_TLS_CERT`/`OLLAMA_TLS_KEY` (None, None for
    plain HTTP); checks both files exist so a typo is one clear error, not an SSL traceback."""
    if not config.tls_cert:
        return None, None
    for name, path in (("OLLAMA_TLS_CERT", config.tls_cert), ("OLLAMA_TLS_KEY", config.tls_key)):
        if not Path(path).is_file():
            raise BadRequestError(f"{name}: no such file {path!r}")
    return config.tls_cert, config.tls_key


def exposure_warning(config: Config, ring: KeyRing) -> str | None:
    """The loud warning for a server others can reach with no key required (or whose keys
    would cross the network in clear), else None."""
    if config.host.is_loopback or config.host.host in _LOOPBACK_ADDRESSES:
        return None
    if ring.active or config.api_keys_required:
        if config.tls_cert:
            return None
        return (
            f"WARNING: listening on {config.host.host} over plain HTTP: API keys cross the "
            "network in clear. Set OLLAMA_TLS_CERT and OLLAMA_TLS_KEY to serve HTTPS."
        )
    return (
        f"WARNING: listening on {config.host.host}, reachable from other machines, with no API "
        "keys: anyone who can reach this port can run, pull, create and delete models. "
        "Create a key with `ollama keys create NAME` (or set OLLAMA_API_KEYS_REQUIRED=1)."
    )
