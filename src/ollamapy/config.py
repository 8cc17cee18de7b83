"""Every `OLLAMA_*` environment variable, typed, defaulted and read lazily.

`Config.from_env()` reads the environment once at the moment it is called (server start,
CLI command); nothing is read at import time, so tests can set variables freely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ollamapy.errors import BadRequestError
from ollamapy.types.duration import parse_duration

DEFAULT_PORT = 11434
DEFAULT_KEEP_ALIVE = 300.0

DESCRIPTIONS: dict[str, str] = {
    "OLLAMA_HOST": "IP address and port for the server (default 127.0.0.1:11434)",
    "OLLAMA_MODELS": "path to the models directory (default ~/.ollama/models)",
    "OLLAMA_ORIGINS": "comma-separated list of extra allowed origins",
    "OLLAMA_KEEP_ALIVE": "how long models stay loaded (default 5m)",
    "OLLAMA_DEBUG": "show additional debug information",
    "OLLAMA_NUM_PARALLEL": "maximum number of parallel requests per model",
    "OLLAMA_MAX_LOADED_MODELS": "maximum number of loaded models (default 3)",
    "OLLAMA_MAX_QUEUE": "maximum number of queued requests (default 512)",
    "OLLAMA_NOPRUNE": "do not prune model blobs on startup",
    "OLLAMA_CONTEXT_LENGTH": "context length used when a request gives none (default 4096)",
    "OLLAMA_FLASH_ATTENTION": "enable flash attention",
    "OLLAMA_KV_CACHE_TYPE": "quantization type for the K/V cache (f16, q8_0, q4_0)",
    "OLLAMA_LOAD_TIMEOUT": "how long a model load may stall before giving up (default 5m)",
    "OLLAMA_SHARE_CORES": "share the CPU cores between models busy at once (default on; 0 = off)",
    "OLLAMA_TMPDIR": "location for temporary files",
    "OLLAMA_LLM_LIBRARY": "accepted for compatibility; llama.cpp is the only engine",
    "OLLAMA_SCHED_SPREAD": "accepted for compatibility (always spread across GPUs)",
    "OLLAMA_MULTIUSER_CACHE": "optimize prompt caching for multi-user scenarios",
    "OLLAMA_NOHISTORY": "do not keep readline history in `ollama run`",
    "OLLAMA_INSECURE": "allow plain-http registries",
    "OLLAMA_API_KEY": "API key the CLI sends (Authorization: Bearer)",
    "OLLAMA_API_KEYS_REQUIRED": "require an API key even before any key exists",
    "OLLAMA_TLS_CERT": "certificate (PEM) to serve HTTPS with; needs OLLAMA_TLS_KEY",
    "OLLAMA_TLS_KEY": "private key (PEM) of OLLAMA_TLS_CERT",
    "OLLAMA_PROMPT_CACHE": "host RAM (and disk) per model for prompt KV beyond the slots, "
    "e.g. 2GiB; 0 disables (default 10% of RAM, at most 2GiB)",
    "OLLAMA_TLS_CA": "CA certificate (PEM) the CLI trusts besides the system store",
    "OLLAMA_DRAFT_MAX": "most tokens speculative decoding drafts per step, 0 = off (default 16)",
}

DEFAULT_ORIGINS: tuple[str, ...] = (
    *(
        f"{scheme}://{host}{port}"
        for host in ("localhost", "127.0.0.1", "0.0.0.0")
        for scheme in ("http", "https")
        for port in ("", ":*")
    ),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)


@dataclass(frozen=True, slots=True)
class HostAddress:
    """Where the server listens / where the client connects."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.host in {"127.0.0.1", "localhost", "::1"} or self.host.startswith("127.")


def parse_host(value: str | None) -> HostAddress:
    """Parse `OLLAMA_HOST` as Ollama does: `host`, `host:port`, `scheme://host:port`, `:port`.

    >>> parse_host("0.0.0.0").url, parse_host("https://example.com").url
    ('http://0.0.0.0:11434', 'https://example.com:443')
    """
    text = (value or "").strip().strip("\"'")
    if not text:
        return HostAddress("http", "127.0.0.1", DEFAULT_PORT)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    parts = urlsplit(f"//{rest}")
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise BadRequestError(f"invalid OLLAMA_HOST {value!r}: {exc}") from None
    if not sep and parts.port is None:
        port = DEFAULT_PORT
    host = parts.hostname or "127.0.0.1"
    return HostAddress(scheme, host, port)


def _flag(value: str | None) -> bool:
    if value is None:
        return False
    return value.strip().strip("\"'").lower() in {"1", "true", "t", "yes", "on"}


def _uint(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        parsed = int(raw)
    except ValueError:
        raise BadRequestError(f"invalid {name} {raw!r}: must be a non-negative integer") from None
    if parsed < 0:
        raise BadRequestError(f"invalid {name} {raw!r}: must be a non-negative integer")
    return parsed


@dataclass(frozen=True)
class Config:
    """The server's and CLI's settings, with Ollama's defaults."""

    host: HostAddress = field(default_factory=lambda: parse_host(None))
    models_dir: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    origins: tuple[str, ...] = ()
    keep_alive: float = DEFAULT_KEEP_ALIVE
    debug: bool = False
    num_parallel: int = 0
    max_loaded_models: int = 0
    max_queue: int = 512
    noprune: bool = False
    context_length: int = 4096
    flash_attention: bool = False
    kv_cache_type: str = ""
    load_timeout: float = 300.0
    tmpdir: str = ""
    nohistory: bool = False
    insecure: bool = False
    api_keys_required: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    share_cores: bool = True
    draft_max: int = 16
    """The runners' default for the `draft_max` option (speculative decoding by prompt
    lookup; 0 turns it off unless a request or Modelfile asks for it)."""
    prompt_cache: int = 0
    """Bytes of host RAM per loaded model for prompt KV beyond its slots, and the bound of
    the files it leaves under `models_dir/cache` when unloaded (0: none)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        models = env.get("OLLAMA_MODELS", "").strip()
        return cls(
            host=parse_host(env.get("OLLAMA_HOST")),
            models_dir=Path(models).expanduser() if models else Path.home() / ".ollama" / "models",
            origins=tuple(o.strip() for o in env.get("OLLAMA_ORIGINS", "").split(",") if o.strip()),
            keep_alive=_keep_alive(env.get("OLLAMA_KEEP_ALIVE")),
            debug=_flag(env.get("OLLAMA_DEBUG")),
            num_parallel=_uint(env, "OLLAMA_NUM_PARALLEL", 0),
            max_loaded_models=_uint(env, "OLLAMA_MAX_LOADED_MODELS", 0),
            max_queue=_uint(env, "OLLAMA_MAX_QUEUE", 512),
            noprune=_flag(env.get("OLLAMA_NOPRUNE")),
            context_length=_uint(env, "OLLAMA_CONTEXT_LENGTH", 4096) or 4096,
            flash_attention=_flag(env.get("OLLAMA_FLASH_ATTENTION")),
            kv_cache_type=env.get("OLLAMA_KV_CACHE_TYPE", "").strip(),
            load_timeout=_load_timeout(env.get("OLLAMA_LOAD_TIMEOUT")),
            tmpdir=env.get("OLLAMA_TMPDIR", "").strip(),
            nohistory=_flag(env.get("OLLAMA_NOHISTORY")),
            insecure=_flag(env.get("OLLAMA_INSECURE")),
            api_keys_required=_flag(env.get("OLLAMA_API_KEYS_REQUIRED")),
            share_cores=_flag(env.get("OLLAMA_SHARE_CORES", "").strip() or "1"),
            prompt_cache=_prompt_cache(env.get("OLLAMA_PROMPT_CACHE")),
            **_tls_pair(env),
            draft_max=_uint(env, "OLLAMA_DRAFT_MAX", 16),
        )

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return self.origins + DEFAULT_ORIGINS

    @property
    def prompt_cache_dir(self) -> Path:
        """Where unloaded models' prompt caches are saved, one folder per model."""
        return self.models_dir / "cache"

    @property
    def keys_file(self) -> Path:
        """The API key file, beside the store: `~/.ollama/keys.json` by default."""
        return self.models_dir.parent / KEYS_FILE_NAME


KEYS_FILE_NAME = "keys.json"


def keys_file(env: Mapping[str, str] | None = None) -> Path:
    """Where `ollama keys` finds the key file; reads only `OLLAMA_MODELS` (and HOME)."""
    env = os.environ if env is None else env
    models = env.get("OLLAMA_MODELS", "").strip()
    models_dir = Path(models).expanduser() if models else Path.home() / ".ollama" / "models"
    return models_dir.parent / KEYS_FILE_NAME


def _tls_pair(env: Mapping[str, str]) -> dict[str, str]:
    """`OLLAMA_TLS_CERT` and `OLLAMA_TLS_KEY` come together or not at all."""
    cert = env.get("OLLAMA_TLS_CERT", "").strip()
    key = env.get("OLLAMA_TLS_KEY", "").strip()
    if bool(cert) != bool(key):
        raise BadRequestError("OLLAMA_TLS_CERT and OLLAMA_TLS_KEY must be set together")
    return {
        "tls_cert": str(Path(cert).expanduser()) if cert else "",
        "tls_key": str(Path(key).expanduser()) if key else "",
    }


def _keep_alive(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return DEFAULT_KEEP_ALIVE
    return parse_duration(raw.strip())


def _load_timeout(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return 300.0
    value = parse_duration(raw.strip())
    return 300.0 if value <= 0 else value


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
PROMPT_CACHE_CAP = 2 * 1024**3


def parse_size(raw: str) -> int:
    """A byte count as people write it: `2GiB`, `512MB`, `1.5g`, `1000000`."""
    text = raw.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _SIZE_UNITS or value < 0 or value != value:
        raise BadRequestError(f"invalid size {raw!r}: use a number of bytes or e.g. 512MiB, 2GiB")
    return int(value * _SIZE_UNITS[unit])


def default_prompt_cache() -> int:
    """A tenth of the machine's RAM, at most 2 GiB."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
    return min(ram // 10, PROMPT_CACHE_CAP)


def _prompt_cache(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return default_prompt_cache()
    try:
        return parse_size(raw)
    except BadRequestError as exc:
        raise BadRequestError(f"invalid OLLAMA_PROMPT_CACHE: {exc.message}") from None
