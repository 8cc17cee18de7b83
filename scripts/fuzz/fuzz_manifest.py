"""Atheris target: the model manifest parser (`store.manifest.Manifest.parse`).

Only `InvalidManifestError` may come out of it. See `harness.py`.
"""

from __future__ import annotations

from collections.abc import Iterable

MODULE = "ollamapy.store.manifest"


def target(data: bytes) -> None:
    from ollamapy.store.errors import InvalidManifestError
    from ollamapy.store.manifest import Manifest

    try:
        manifest = Manifest.parse(data)
    except InvalidManifestError:
        return
    manifest.to_bytes()
    manifest.total_size  # noqa: B018


def seeds() -> Iterable[bytes]:
    digest = "sha256:" + "a" * 64
    yield (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"'
        + digest.encode()
        + b'","size":7},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"'
        + digest.encode()
        + b'","size":100,"from":"/x"}]}'
    )
    yield b'{"schemaVersion":2,"config":{},"layers":[]}'


if __name__ == "__main__":
    from harness import main

    main(MODULE, target, seeds)
