"""What a runner process settles before llama.cpp (and with it GNU OpenMP) is loaded.

libgomp reads `GOMP_SPINCOUNT` once, when it is loaded: how many times an idle worker
polls for work before it sleeps. Its default (300000 polls, about 8 ms here) keeps a core
busy after every `llama_decode`. For an embedding model that core is the one the server
and this process's own Python need next (HTTP, JSON, normalising): on 2 cores, 3000 polls
(under 0.1 ms) gave one-sentence `/api/embed` requests 16% more throughput (median of 6
paired runs) and steadier batches. Workers still spin through the barriers inside a
decode, where waits are short. Generative models keep the default: their decodes follow
each other within a token's sampling time, and the short spin measured 1-2% slower there.

The model's architecture is read from the GGUF header with our own reader, before llama.cpp.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

from ollamapy.errors import GGUFError
from ollamapy.gguf import read_key

EMBEDDING_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "neo-bert"})
"""Architectures that only embed (the loader also honours a pooling type in the GGUF)."""
EMBEDDING_SPIN = "3000"


def gguf_architecture(path: str | Path) -> str | None:
    """The model's `general.architecture`; None for anything that is not a readable GGUF."""
    try:
        value = read_key(path, "general.architecture")
    except (GGUFError, OSError):
        return None
    return value if isinstance(value, str) and value else None


def quiet_openmp(env: MutableMapping[str, str], model_path: str | Path) -> None:
    """Shorten OpenMP's idle spin in `env` for an embedding model, unless `env` already
    says how workers wait (`GOMP_SPINCOUNT` or `OMP_WAIT_POLICY`)."""
    if "GOMP_SPINCOUNT" in env or "OMP_WAIT_POLICY" in env:
        return
    if gguf_architecture(model_path) in EMBEDDING_ARCHS:
        env["GOMP_SPINCOUNT"] = EMBEDDING_SPIN
