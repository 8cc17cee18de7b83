"""HTTPS: `ollama serve` with OLLAMA_TLS_CERT/KEY, the CLI trusting OLLAMA_TLS_CA, and the
official client verifying against a CA file. The certificate is made by `openssl` here."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import pytest

from ollamapy.auth import KeyFile, Scope
from tests.ggufs import write_tiny_gguf
from tests.server.conftest import free_port

MODEL = "tiny:latest"


@dataclass
class Tls:
    cert: Path
    key: Path


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A self-signed certificate for localhost and 127.0.0.1 (it is its own CA)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return Tls(cert, key)


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def clean_env(**env: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")} | env


def ollama_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ollamapy", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=60,
    )


@dataclass
class HttpsServer:
    host: str
    url: str
    ca: Path


@pytest.fixture
def https_server(tmp_path: Path, tls: Tls) -> Iterator[HttpsServer]:
    """`ollama serve` over HTTPS with one model (created over HTTPS, trusting the cert)."""
    host = f"127.0.0.1:{free_port()}"
    env = clean_env(
        OLLAMA_HOST=host,
        OLLAMA_MODELS=str(tmp_path / "models"),
        OLLAMA_TLS_CERT=str(tls.cert),
        OLLAMA_TLS_KEY=str(tls.key),
    )
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ollamapy", "serve"], env=env, stdout=log, stderr=log
    )
    url = f"https://{host}"
    try:
        _wait_until_serving(url, tls.cert, process)
        gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
        created = httpx.post(
            f"{url}/api/create",
            json={"model": MODEL, "modelfile": f"FROM {gguf}", "stream": False},
            verify=trusting(tls.cert),
            timeout=60,
        )
        assert created.status_code == 200, created.text
        yield HttpsServer(host, url, tls.cert)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_until_serving(url: str, ca: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ollama serve exited with {process.returncode}")
        try:
            httpx.get(url, verify=trusting(ca), timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("ollama serve did not start")


def test_ollama_list_over_https_trusts_OLLAMA_TLS_CA(https_server: HttpsServer) -> None:
    listed = ollama_cli("list", OLLAMA_HOST=https_server.url, OLLAMA_TLS_CA=str(https_server.ca))
    assert listed.returncode == 0, listed.stderr
    assert MODEL in listed.stdout


def test_an_untrusted_certificate_is_a_clear_error(https_server: HttpsServer) -> None:
    listed = ollama_cli("list", OLLAMA_HOST=https_server.url)
    assert listed.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in listed.stderr
    assert "OLLAMA_TLS_CA" in listed.stderr


def test_plain_http_to_an_https_server_gets_no_answer(https_server: HttpsServer) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{https_server.host}/api/tags", timeout=5)


def test_the_ollama_client_verifies_with_a_ca_file(https_server: HttpsServer) -> None:
    client = ollama.Client(host=https_server.url, verify=str(https_server.ca))
    assert [m.model for m in client.list().models] == [MODEL]


def test_https_and_keys_together(https_server: HttpsServer, tmp_path: Path) -> None:
    secret, _ = KeyFile(tmp_path / "keys.json").create("cli", {Scope.ALL})
    env = {"OLLAMA_HOST": https_server.url, "OLLAMA_TLS_CA": str(https_server.ca)}
    refused = ollama_cli("list", **env)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
    listed = ollama_cli("list", OLLAMA_API_KEY=secret, **env)
    assert listed.returncode == 0, listed.stderr
    assert MODEL in listed.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OLLAMA_TLS_CERT": "cert.pem"},
            "OLLAMA_TLS_CERT and OLLAMA_TLS_KEY must be set together",
        ),
        ({"OLLAMA_TLS_CERT": "/no/cert.pem", "OLLAMA_TLS_KEY": "/no/key.pem"}, "no such file"),
    ],
    ids=["cert-without-key", "missing-files"],
)
def test_serve_refuses_a_bad_tls_setting_in_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    served = ollama_cli(
        "serve", OLLAMA_HOST=f"127.0.0.1:{free_port()}", OLLAMA_MODELS=str(tmp_path), **env
    )
    assert served.returncode == 1
    assert message in served.stderr
    assert "Traceback" not in served.stderr
