"""Where a model lives on a registry: `<scheme>://<host>/v2/<namespace>/<model>/...`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ollamapy.registry.errors import InsecureProtocolError
from ollamapy.types import Digest, ModelName


@dataclass(frozen=True, slots=True)
class Remote:
    """A model name bound to its registry URL.

    As in Ollama, a name written with `http://` is only accepted with `insecure`
    ("insecure protocol http" otherwise), and `insecure` switches any registry to
    plain http; everything else uses https.
    """

    name: ModelName
    scheme: str

    @classmethod
    def resolve(cls, text: str, insecure: bool) -> Remote:
        name = ModelName.parse(text)
        explicit_http = text.strip().lower().startswith("http://")
        if explicit_http and not insecure:
            raise InsecureProtocolError("insecure protocol http")
        return cls(name, "http" if insecure else "https")

    @property
    def base_url(self) -> httpx.URL:
        return httpx.URL(f"{self.scheme}://{self.name.host}/")

    @property
    def repository(self) -> str:
        """`<namespace>/<model>`, the repository part of every registry path."""
        return f"{self.name.namespace}/{self.name.model}"

    def url(self, *parts: str) -> httpx.URL:
        return self.base_url.join("/".join(("v2", self.repository, *parts)))

    def manifest_url(self) -> httpx.URL:
        return self.url("manifests", self.name.tag)

    def blob_url(self, digest: Digest) -> httpx.URL:
        return self.url("blobs", str(digest))

    def upload_url(self) -> httpx.URL:
        return self.url("blobs", "uploads/")

    def same_origin(self, url: httpx.URL) -> bool:
        """True when `url` is this registry itself, the only place credentials may go."""
        base = self.base_url
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
