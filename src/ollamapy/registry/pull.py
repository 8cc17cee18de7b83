"""`ollama pull`: manifest, then the missing blobs, verified, then the manifest is written.

The order is what keeps a store consistent: blobs enter the store only after their
sha256 is checked, and the manifest (the registry's bytes, unchanged, so the local
digest is the registry's) is written last. Any failure before that leaves no model,
only partial downloads that the next pull resumes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

from ollamapy.errors import OllamaError
from ollamapy.registry.client import RegistryClient
from ollamapy.registry.download import (
    BlobDownload,
    Hashed,
    blob_lock,
    recorded_bytes,
    verify_and_commit,
)
from ollamapy.registry.errors import (
    BlobDigestMismatchError,
    RegistryError,
    RegistryNotFoundError,
)
from ollamapy.registry.options import RegistryOptions
from ollamapy.registry.progress import Event, drive, transfer_event
from ollamapy.registry.remote import Remote
from ollamapy.store import (
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    Layer,
    Manifest,
    MissingBlobsError,
    Store,
)
from ollamapy.types import Digest, ModelName

OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {OCI_MANIFEST_MEDIA_TYPE}"
COMMIT_ATTEMPTS = 3
"""Rounds of download-then-write when other servers keep deleting blobs we rely on."""
CLAIM_POLL_S = 0.1
"""How often to look again while another server downloads the same blob."""


async def pull_model(
    store: Store, model: str, options: RegistryOptions | None = None
) -> AsyncIterator[Event]:
    """Pull `model` into `store`, yielding Ollama's progress events.

    The name is checked before the first event, so a bad name is an HTTP error rather
    than an in-band one.
    """
    options = options or RegistryOptions()
    remote = Remote.resolve(model, options.insecure)
    yield {"status": "pulling manifest"}
    async with RegistryClient(remote, options) as client:
        data = await fetch_manifest(client)
        manifest = Manifest.parse(data)
        previous: frozenset[Digest] = frozenset()
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            downloaded: list[tuple[Layer, Hashed | None]] = []
            for layer in blobs_of(manifest):
                async for event in _pull_blob(client, store, layer, downloaded):
                    yield event
            yield {"status": "verifying sha256 digest"}
            await _verify_all(store, downloaded)
            yield {"status": "writing manifest"}
            previous = await asyncio.to_thread(_existing_digests, store, remote.name)
            try:
                await asyncio.to_thread(store.write_manifest_bytes, remote.name, data)
                break
            except MissingBlobsError:
                # Another server sharing this store deleted a model that used one of
                # these blobs after we found it present: fetch what went, then retry.
                if attempt == COMMIT_ATTEMPTS:
                    raise
    unused = previous - manifest.digests
    if unused and not options.noprune:
        yield {"status": "removing any unused layers"}
        await asyncio.to_thread(store.remove_unreferenced, unused)
    yield {"status": "success"}


async def fetch_manifest(client: RegistryClient) -> bytes:
    """The manifest's raw bytes (size-capped), errors worded as Ollama's."""
    try:
        _response, data = await client.call(
            "GET",
            client.remote.manifest_url(),
            ok={200},
            headers={"Accept": MANIFEST_ACCEPT},
            limit=MAX_MANIFEST_BYTES,
        )
    except RegistryNotFoundError as exc:
        raise RegistryNotFoundError(f"pull model manifest: {exc.message}") from None
    except RegistryError as exc:
        message = f"pull model manifest: {exc.message}"
        raise type(exc)(message, transient=exc.transient) from None
    return data


def blobs_of(manifest: Manifest) -> list[Layer]:
    """Layers then config (Ollama's order), each digest once."""
    seen: set[Digest] = set()
    unique = []
    for layer in (*manifest.layers, manifest.config):
        if layer.digest not in seen:
            seen.add(layer.digest)
            unique.append(layer)
    return unique


async def _pull_blob(
    client: RegistryClient,
    store: Store,
    layer: Layer,
    downloaded: list[tuple[Layer, Hashed | None]],
) -> AsyncIterator[Event]:
    status = f"pulling {layer.digest.short}"
    if store.has_blob(layer.digest):
        yield transfer_event(status, str(layer.digest), layer.size, layer.size)
        return
    async with blob_lock(store.partial_path(layer.digest)):
        download = BlobDownload(client, store, layer)
        shown_at = -math.inf
        while not await asyncio.to_thread(download.claim):
            # Another server on this store is fetching it: wait, showing its progress.
            now = asyncio.get_running_loop().time()
            if now - shown_at >= client.settings.progress_interval:
                shown_at = now
                done = await asyncio.to_thread(recorded_bytes, store, layer.digest)
                yield transfer_event(status, str(layer.digest), layer.size, min(done, layer.size))
            await asyncio.sleep(CLAIM_POLL_S)
        try:
            if store.has_blob(layer.digest):  # another pull finished it while we waited
                await asyncio.to_thread(download.discard_claimed)
                yield transfer_event(status, str(layer.digest), layer.size, layer.size)
                return
            await asyncio.to_thread(download.prepare)
            yield download.event()
            interval = client.settings.progress_interval
            async for event in drive(download.run(), download.event, interval):
                yield event
        finally:
            download.release()  # a no-op once `run` took the claimed file over
    downloaded.append((layer, download.hashed))


async def _verify_all(store: Store, downloaded: list[tuple[Layer, Hashed | None]]) -> None:
    """Verify every downloaded blob (good ones enter the store, bad ones are deleted),
    then report the first mismatch, so no corrupt data is left to be "resumed".
    The sha256 was computed during the download; an unchanged file is not read again."""
    failures: list[BlobDigestMismatchError] = []
    for layer, hashed in downloaded:
        async with blob_lock(store.partial_path(layer.digest)):
            try:
                await asyncio.to_thread(verify_and_commit, store, layer.digest, layer.size, hashed)
            except BlobDigestMismatchError as exc:
                failures.append(exc)
    if failures:
        raise failures[0]


def _existing_digests(store: Store, name: ModelName) -> frozenset[Digest]:
    """Blobs the model's current manifest uses (empty when it has none or it is unreadable)."""
    try:
        return store.read_manifest(name).digests
    except (OllamaError, OSError):
        return frozenset()
