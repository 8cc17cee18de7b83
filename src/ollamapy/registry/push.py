"""`ollama push`: upload the blobs the registry lacks, then the manifest.

Per blob: `HEAD` to skip what the registry has; a cross-repository mount when the
layer records the model it came from on the same registry; otherwise an upload session
(`POST .../blobs/uploads/`, following `Location`, relative or absolute): one `PUT
?digest=` for small blobs, sequential `PATCH` chunks then a closing `PUT` for large
ones. A blob whose upload fails transiently is retried from a new session. The manifest
goes last, as the exact bytes in the store, with its own media type.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

import httpx

from ollamapy.errors import InvalidNameError, NotFoundError
from ollamapy.registry.client import RegistryClient
from ollamapy.registry.errors import RegistryError, describe_network_failure
from ollamapy.registry.options import RegistryOptions
from ollamapy.registry.progress import Event, drive, transfer_event
from ollamapy.registry.pull import blobs_of
from ollamapy.registry.remote import Remote
from ollamapy.store import Layer, Manifest, Store
from ollamapy.types import ModelName

READ_SIZE = 1024 * 1024


async def push_model(
    store: Store, model: str, options: RegistryOptions | None = None
) -> AsyncIterator[Event]:
    """Push `model` from `store` to its registry, yielding Ollama's progress events."""
    options = options or RegistryOptions()
    remote = Remote.resolve(model, options.insecure)
    yield {"status": "retrieving manifest"}
    data = await asyncio.to_thread(store.read_manifest_bytes, remote.name)
    manifest = Manifest.parse(data)
    async with RegistryClient(remote, options) as client:
        for layer in blobs_of(manifest):
            upload = BlobUpload(client, store, layer)
            if await upload.exists():
                yield upload.event(done=True)
                continue
            yield upload.event()
            async for event in drive(upload.run(), upload.event, client.settings.progress_interval):
                yield event
        yield {"status": "pushing manifest"}
        await client.call(
            "PUT",
            remote.manifest_url(),
            ok={200, 201},
            headers={"Content-Type": manifest.media_type},
            body=data,
        )
    yield {"status": "success"}


class BlobUpload:
    """Upload one blob of the store to the registry."""

    def __init__(self, client: RegistryClient, store: Store, layer: Layer) -> None:
        self.client = client
        self.store = store
        self.layer = layer
        self.path = store.blob_path(layer.digest)
        self.sent = 0

    def event(self, *, done: bool = False) -> Event:
        status = f"pushing {self.layer.digest.short}"
        completed = self.layer.size if done else self.sent
        return transfer_event(status, str(self.layer.digest), self.layer.size, completed)

    async def exists(self) -> bool:
        url = self.client.remote.blob_url(self.layer.digest)
        response, _ = await self.client.call("HEAD", url, ok={200, 404})
        return response.status_code == 200

    async def run(self) -> None:
        """Upload, starting a new session after a transient failure (bounded)."""
        if not self.path.is_file():
            raise NotFoundError(f"blob {self.layer.digest} not found")
        settings = self.client.settings
        for attempt in range(settings.retries + 1):
            try:
                await self._upload_once()
                return
            except httpx.TransportError as exc:
                reason = describe_network_failure(exc, self.client.remote.upload_url())
                error = RegistryError(f"upload of {self.layer.digest.short} failed: {reason}")
            except RegistryError as exc:
                if not exc.transient:
                    raise
                error = exc
            if attempt == settings.retries:
                raise error
            await asyncio.sleep(settings.backoff(attempt))

    async def _upload_once(self) -> None:
        self.sent = 0
        location = await self._start_session()
        if location is None:
            self.sent = self.layer.size
            return
        total, chunk = self.layer.size, max(1, self.client.settings.upload_chunk_size)
        if total <= chunk:
            await self._finish(location, 0, total)
            return
        for offset in range(0, total, chunk):
            location = await self._patch(location, offset, min(chunk, total - offset))
        await self._finish(location, total, 0)

    async def _start_session(self) -> httpx.URL | None:
        """POST a new upload (or a mount); None when the registry mounted the blob."""
        url = self.client.remote.upload_url()
        source = self._mount_source()
        if source is not None:
            url = url.copy_merge_params({"mount": str(self.layer.digest), "from": source})
        response, _ = await self.client.call("POST", url, ok={201, 202}, retry=False)
        if response.status_code == 201 and source is not None:
            return None
        return _location(response)

    def _mount_source(self) -> str | None:
        """The repository this layer came from, when it is another one on this registry."""
        if not self.layer.from_:
            return None
        try:
            origin = ModelName.parse(self.layer.from_)
        except InvalidNameError:
            return None
        remote = self.client.remote
        if origin.host.lower() != remote.name.host.lower():
            return None
        source = f"{origin.namespace}/{origin.model}"
        return None if source.lower() == remote.repository.lower() else source

    async def _patch(self, location: httpx.URL, offset: int, length: int) -> httpx.URL:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{offset}-{offset + length - 1}",
        }
        body = self._body(offset, length)
        response, _ = await self.client.call(
            "PATCH", location, ok={202}, headers=headers, body=body, retry=False
        )
        return _location(response)

    async def _finish(self, location: httpx.URL, offset: int, length: int) -> None:
        """The closing `PUT ?digest=`, carrying the last (or only) bytes if any."""
        url = location.copy_merge_params({"digest": str(self.layer.digest)})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        body = self._body(offset, length) if length else b""
        await self.client.call("PUT", url, ok={201}, headers=headers, body=body, retry=False)
        self.sent = self.layer.size

    def _body(self, offset: int, length: int) -> Callable[[], AsyncIterator[bytes]]:
        """A factory of streams over the blob's bytes [offset, offset+length)."""

        async def stream() -> AsyncIterator[bytes]:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)  # in the loop: no leak on cancel
            try:
                position, end = offset, offset + length
                while position < end:
                    size = min(READ_SIZE, end - position)
                    data = await asyncio.to_thread(os.pread, fd, size, position)
                    if not data:
                        raise RegistryError(f"blob {self.layer.digest} is shorter than its size")
                    position += len(data)
                    self.sent = position
                    yield data
            finally:
                os.close(fd)

        return stream


def _location(response: httpx.Response) -> httpx.URL:
    """Where the upload continues: `Docker-Upload-Location` or `Location`, made absolute."""
    location = response.headers.get("docker-upload-location") or response.headers.get("location")
    if not location:
        raise RegistryError("registry did not say where to upload (no Location header)")
    return response.request.url.join(location)
