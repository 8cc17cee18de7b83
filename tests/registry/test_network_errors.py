"""Network failures of a pull or push are told in words a user can act on.

httpx and OpenSSL word them for programmers (`All connection attempts failed`,
`[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)`); the registry layer
names the host, what went wrong and, for a registry that speaks plain http, the fix
(`--insecure`). Real sockets on loopback for refused connections and for TLS spoken to a
plain HTTP server; exception chains built as httpx builds them for the failures that
loopback cannot produce on demand (DNS, timeouts).
"""

from __future__ import annotations

import errno
import itertools
import socket
import ssl

import httpx
import pytest

from ollamapy.registry import RegistryError, RegistryOptions, pull_model, push_model
from ollamapy.registry.errors import describe_network_failure, network_error
from ollamapy.store import Store
from tests.registry.conftest import FAST, collect, make_model
from tests.registry.servers import free_port

PYTHON_INTERNALS = ("_ssl.c", "[SSL", "WRONG_VERSION", "All connection attempts", "Errno")


def assert_user_worded(message: str) -> None:
    for internal in PYTHON_INTERNALS:
        assert internal not in message, message


@pytest.fixture
def closed_port() -> str:
    """`host:port` where nothing listens: connections are refused."""
    return f"127.0.0.1:{free_port()}"


def secure() -> RegistryOptions:
    """Options as a user gives them by default: https, no `--insecure`."""
    return RegistryOptions(settings=FAST)


async def test_pull_over_https_from_a_plain_http_registry_says_use_insecure(
    plain_http: str, store: Store
) -> None:
    with pytest.raises(RegistryError) as raised:
        await collect(pull_model(store, f"{plain_http}/me/model:v1", secure()))
    message = raised.value.message
    assert message == (
        f"pull model manifest: could not connect to {plain_http} over https: it answers in "
        "plain http; to pull from (or push to) a registry without TLS, use --insecure "
        "(`insecure: true` in the API)"
    )
    assert_user_worded(message)


async def test_pull_from_a_closed_port_says_connection_refused(
    closed_port: str, store: Store
) -> None:
    with pytest.raises(RegistryError) as raised:
        await collect(pull_model(store, f"{closed_port}/me/model:v1", secure()))
    message = raised.value.message
    assert message == f"pull model manifest: could not connect to {closed_port}: connection refused"
    assert_user_worded(message)


async def test_insecure_pull_from_a_closed_port_says_connection_refused(
    closed_port: str, store: Store
) -> None:
    options = RegistryOptions(insecure=True, settings=FAST)
    with pytest.raises(RegistryError) as raised:
        await collect(pull_model(store, f"{closed_port}/me/model:v1", options))
    assert raised.value.message.endswith(f"could not connect to {closed_port}: connection refused")


async def test_push_to_a_plain_http_registry_over_https_says_use_insecure(
    plain_http: str, store: Store
) -> None:
    name, _ = make_model(store, f"{plain_http}/me/model:v1")
    with pytest.raises(RegistryError) as raised:
        await collect(push_model(store, str(name), secure()))
    message = raised.value.message
    assert f"could not connect to {plain_http} over https: it answers in plain http" in message
    assert "--insecure" in message
    assert_user_worded(message)


async def test_push_to_a_closed_port_says_connection_refused(
    closed_port: str, store: Store
) -> None:
    name, _ = make_model(store, f"{closed_port}/me/model:v1")
    with pytest.raises(RegistryError) as raised:
        await collect(push_model(store, str(name), secure()))
    assert raised.value.message == f"could not connect to {closed_port}: connection refused"


# --------------------------------------------------------------------- the mapping itself

URL = httpx.URL("https://registry.example.com/v2/library/m/manifests/latest")


def raised_from(outer: httpx.TransportError, *causes: BaseException) -> httpx.TransportError:
    """`outer` raised from a chain of causes, innermost last, as httpx/httpcore/anyio do."""
    chain: list[BaseException] = [outer, *causes]
    for upper, lower in itertools.pairwise(chain):
        upper.__cause__ = lower
    return outer


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        pytest.param(
            raised_from(
                httpx.ConnectError("[Errno -2] Name or service not known"),
                socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            ),
            "could not resolve host registry.example.com",
            id="dns",
        ),
        pytest.param(
            raised_from(
                httpx.ConnectError("All connection attempts failed"),
                OSError("All connection attempts failed"),
                ExceptionGroup(
                    "multiple connection attempts failed",
                    [
                        OSError(errno.ENETUNREACH, "Network is unreachable"),
                        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
                    ],
                ),
            ),
            "could not connect to registry.example.com: connection refused",
            id="refused-on-one-of-several-addresses",
        ),
        pytest.param(
            raised_from(
                httpx.ConnectError("All connection attempts failed"),
                OSError(errno.ENETUNREACH, "Network is unreachable"),
            ),
            "could not connect to registry.example.com: network is unreachable",
            id="unreachable",
        ),
        pytest.param(
            httpx.ConnectTimeout(""),
            "could not connect to registry.example.com: timed out",
            id="connect-timeout",
        ),
        pytest.param(
            httpx.ReadTimeout("no data for 60 s"),
            "timed out waiting for registry.example.com",
            id="read-timeout",
        ),
        pytest.param(
            raised_from(
                httpx.ReadError("[Errno 104] Connection reset by peer"),
                ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
            ),
            "connection to registry.example.com was reset",
            id="reset",
        ),
        pytest.param(
            raised_from(
                httpx.ConnectError("certificate verify failed"),
                ssl.SSLCertVerificationError(1, "certificate verify failed"),
            ),
            "the TLS certificate of registry.example.com could not be verified",
            id="certificate",
        ),
        pytest.param(
            httpx.RemoteProtocolError("server disconnected without sending a response"),
            "connection to registry.example.com failed: "
            "server disconnected without sending a response",
            id="protocol",
        ),
    ],
)
def test_each_failure_is_worded_for_the_user(failure: httpx.TransportError, message: str) -> None:
    described = describe_network_failure(failure, URL)
    assert described.startswith(message), described
    assert_user_worded(described)
    error = network_error(failure, URL)
    assert error.message == described and error.transient


def test_the_failed_requests_own_host_is_named() -> None:
    """A redirect to a CDN or a token realm fails there, not at the registry."""
    request = httpx.Request("GET", "https://cdn.example.net:8443/blob")
    failure = httpx.ConnectError("All connection attempts failed", request=request)
    failure.__cause__ = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert describe_network_failure(failure, URL) == (
        "could not connect to cdn.example.net:8443: connection refused"
    )
