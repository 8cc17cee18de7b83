"""Registry transfer errors, in the project's error tree so routes map them to statuses.

Messages follow Ollama's wording where clients (or users) may match on them, and never
carry credentials, tokens or signed headers: only status codes, URLs without userinfo
and the registry's own error text.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

import httpx

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


# --------------------------------------------------------------------- network failures

INSECURE_HINT = "use --insecure (`insecure: true` in the API)"

_PLAIN_HTTP_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}
)
"""OpenSSL's reasons when the far end of a TLS handshake answered in plain HTTP (the
record header it read was `HTTP/1.1 400`); which one depends on the OpenSSL version."""


def network_error(exc: BaseException, url: httpx.URL | None = None) -> RegistryError:
    """The `RegistryError` for a failed connection, worded for the user who must act on it.

    httpx (and the blob transport) hand on the socket's or OpenSSL's own text (`All
    connection attempts failed`, `[SSL: WRONG_VERSION_NUMBER] wrong version number
    (_ssl.c:1006)`); this names the host and says what went wrong in Ollama's terms,
    with the fix where there is one (plain http needs `--insecure`). `url` is the
    request's, used when the exception does not carry its own. Always transient: the
    same request may work later.
    """
    return RegistryError(describe_network_failure(exc, url), transient=True)


def describe_network_failure(exc: BaseException, url: httpx.URL | None = None) -> str:
    """The message of `network_error` (see there)."""
    url = _request_url(exc) or url
    host = _host(url)
    causes = list(_causes(exc))
    tls = next((e for e in causes if isinstance(e, ssl.SSLError)), None)
    if tls is not None:
        return _tls_failure(tls, host)
    if any(isinstance(e, socket.gaierror) for e in causes):
        return f"could not resolve host {host}"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return f"could not connect to {host}: connection refused"
    if any(isinstance(e, httpx.ConnectTimeout) for e in causes):
        return f"could not connect to {host}: timed out"
    if any(isinstance(e, httpx.TimeoutException | TimeoutError) for e in causes):
        return f"timed out waiting for {host}"
    if any(isinstance(e, ConnectionResetError) for e in causes):
        return f"connection to {host} was reset"
    unreachable = next((e for e in causes if _errno(e) in _UNREACHABLE), None)
    if unreachable is not None:
        return f"could not connect to {host}: {_strerror(unreachable)}"
    root = causes[-1]
    return f"connection to {host} failed: {_strerror(root)}"


_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


def _tls_failure(exc: ssl.SSLError, host: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or "certificate verify failed"
        return (
            f"the TLS certificate of {host} could not be verified: {reason} "
            f"(if you trust this registry, {INSECURE_HINT})"
        )
    code: str | None = getattr(exc, "reason", None)  # set by the ssl module when it raises
    if code in _PLAIN_HTTP_REASONS:
        return (
            f"could not connect to {host} over https: it answers in plain http; "
            f"to pull from (or push to) a registry without TLS, {INSECURE_HINT}"
        )
    reason = (code or "handshake failed").lower().replace("_", " ")
    return f"TLS handshake with {host} failed: {reason}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it was raised from (explicitly or not) and the members of any
    exception group on the way, depth first, each once: the socket's own error (refused,
    unresolvable, TLS) sits a few links below httpx's."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        following = current.__cause__ or current.__context__
        if following is not None:
            stack.append(following)
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))


def _request_url(exc: BaseException) -> httpx.URL | None:
    """The URL of the request that failed, when httpx recorded it on the exception."""
    if not isinstance(exc, httpx.RequestError):
        return None
    try:
        return exc.request.url
    except RuntimeError:  # raised outside a client, with no request attached
        return None


def _host(url: httpx.URL | None) -> str:
    """`host[:port]` as written in the URL (never its userinfo), or `the registry`."""
    if url is None or not url.host:
        return "the registry"
    host = f"[{url.host}]" if ":" in url.host else url.host  # an IPv6 address
    return f"{host}:{url.port}" if url.port else host


def _errno(exc: BaseException) -> int | None:
    return exc.errno if isinstance(exc, OSError) else None


def _strerror(exc: BaseException) -> str:
    """An OSError's text without the `[Errno N]` prefix, lower-cased as Go words it."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
