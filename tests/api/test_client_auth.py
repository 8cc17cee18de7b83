"""The CLI's HTTP client: the API key it sends, and the certificates it trusts over HTTPS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ollamapy.api.client import Client, ClientError, auth_headers, tls_context


def sent_headers(**kwargs: str) -> httpx.Headers:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"models": []})

    with Client("127.0.0.1:1", transport=httpx.MockTransport(handler), **kwargs) as client:
        client.list()
    return seen[0].headers


def test_OLLAMA_API_KEY_is_sent_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "olk_secret")
    assert sent_headers()["authorization"] == "Bearer olk_secret"


def test_no_key_no_authorization_header() -> None:
    assert "authorization" not in sent_headers()


def test_an_explicit_key_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "olk_env")
    assert sent_headers(api_key="olk_arg")["authorization"] == "Bearer olk_arg"


def test_a_blank_key_is_no_key() -> None:
    assert auth_headers({"OLLAMA_API_KEY": "  "}) == {}


def test_a_missing_ca_file_is_a_client_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="OLLAMA_TLS_CA"):
        tls_context({"OLLAMA_TLS_CA": str(tmp_path / "nope.pem")})


def test_a_ca_file_that_is_not_a_certificate_is_a_client_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ClientError, match="OLLAMA_TLS_CA"):
        tls_context({"OLLAMA_TLS_CA": str(bogus)})


def test_without_a_ca_the_system_store_is_trusted() -> None:
    context = tls_context({})
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0
