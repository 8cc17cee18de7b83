"""Registry transfer errors, in the project's error tree so routes map them to statuses.

Messages follow Ollama's wording where clients (or users) may match on them, and never
carry credentials, tokens or signed headers: only status codes, URLs without userinfo
and the registry's own error text.
"""

from __future__ import annotations

from ollamapy.errors import NotFoundError, OllamaError


class RegistryError(OllamaError):
    """A registry answered with an error, or could not be reached after retries."""

    status_code = 500

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        """True for network failures and 5xx/429 answers: worth retrying later."""


class RegistryUnauthorizedError(RegistryError):
    """The registry refused our credentials (or we had none to offer)."""

    status_code = 401


class RegistryNotFoundError(NotFoundError):
    """The registry has no such manifest or blob (Ollama: `file does not exist`)."""


class InsecureProtocolError(RegistryError):
    """An `http://` registry was named without `insecure`, which Ollama refuses."""

    status_code = 400


class BlobDigestMismatchError(RegistryError):
    """Downloaded bytes did not hash to the digest the manifest promised."""

    status_code = 500
