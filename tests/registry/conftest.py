"""Registry fixtures: real `docker-registry` processes (plain and htpasswd) and a proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ollamapy.registry import Event, RegistryOptions, TransferSettings
from ollamapy.store import CONFIG_MEDIA_TYPE, Layer, Manifest, MediaType, Store
from ollamapy.types import ModelName
from tests.registry.servers import (
    Proxy,
    Registry,
    run_proxy,
    run_registry,
    serve_plain_http,
)

USER, PASSWORD = "alice", "s3cret-pa55"

FAST = TransferSettings(
    part_count=16,
    min_part_size=64 * 1024,
    max_part_size=64 * 1024,
    max_connections=4,
    upload_chunk_size=100 * 1024,
    retries=2,
    backoff_base=0.01,
    backoff_max=0.05,
    read_timeout=20,
    progress_interval=0.01,
    state_save_interval=0.0,
)
"""Small parts and quick retries, so 300 KB blobs exercise parallel ranged parts."""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from run_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """htpasswd basic auth; relative `Location` headers, to exercise resolving them."""
    yield from run_registry(
        tmp_path_factory.mktemp("auth-registry"), (USER, PASSWORD), relative_urls=True
    )


@pytest.fixture
def proxy(registry: Registry) -> Iterator[Proxy]:
    yield from run_proxy(Proxy(registry.host))


@pytest.fixture
def second_proxy(registry: Registry) -> Iterator[Proxy]:
    """Another origin in front of the same registry (a CDN, or a foreign token realm)."""
    yield from run_proxy(Proxy(registry.host))


@pytest.fixture(scope="module")
def plain_http() -> Iterator[str]:
    """`host:port` of a plain HTTP server, for pulls and pushes that try https there."""
    with serve_plain_http() as host:
        yield host


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store-a")


@pytest.fixture
def other_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store-b")


def options(**overrides: object) -> RegistryOptions:
    values: dict[str, object] = {"insecure": True, "settings": FAST}
    values.update(overrides)
    return RegistryOptions(**values)  # type: ignore[arg-type]


def make_model(
    store: Store, name: str, *, model_size: int = 300_000, seed: int = 1
) -> tuple[ModelName, Manifest]:
    """A model written straight into `store`: a pseudo-random weights blob, a template,
    params and a config, so pushes carry several blobs of different sizes."""
    weights = bytes((i * 131 + seed * 17 + (i >> 8)) % 256 for i in range(model_size))
    layers = []
    for media_type, data in (
        (MediaType.MODEL, weights),
        (MediaType.TEMPLATE, f"{{{{ .Prompt }}}} #{seed}".encode()),
        (MediaType.PARAMS, b'{"temperature":0.5}'),
    ):
        digest, size = store.write_blob([data])
        layers.append(Layer(str(media_type), digest, size))
    config_digest, config_size = store.write_blob([b'{"model_format":"gguf","seed":%d}' % seed])
    manifest = Manifest(Layer(CONFIG_MEDIA_TYPE, config_digest, config_size), tuple(layers))
    model = ModelName.parse(name)
    store.write_manifest(model, manifest)
    return model, manifest


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


def statuses(events: list[Event]) -> list[str]:
    """Statuses with consecutive repeats folded, for comparing event sequences."""
    folded: list[str] = []
    for event in events:
        if not folded or folded[-1] != event["status"]:
            folded.append(event["status"])
    return folded


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()
