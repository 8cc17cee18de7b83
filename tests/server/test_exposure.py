"""What `ollama serve` checks before listening: the loud warnings about who can reach it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ollamapy.auth import KeyFile, Scope
from ollamapy.config import Config, parse_host
from ollamapy.server.exposure import exposure_warning, prepare_to_serve


@pytest.mark.parametrize(
    ("host", "keys", "required", "tls", "warning"),
    [
        ("127.0.0.1", False, False, False, None),
        ("0.0.0.0", False, False, False, "with no API keys"),
        ("192.168.1.5", False, False, False, "with no API keys"),
        ("0.0.0.0", True, False, False, "in clear"),
        ("0.0.0.0", False, True, False, "in clear"),
        ("0.0.0.0", True, False, True, None),
    ],
    ids=["loopback", "all-interfaces", "lan", "keys-over-http", "required-over-http", "keys-tls"],
)
def test_exposure_warning(
    tmp_path: Path, host: str, keys: bool, required: bool, tls: bool, warning: str | None
) -> None:
    config = Config(
        host=parse_host(f"{host}:1"),
        api_keys_required=required,
        tls_cert="c.pem" if tls else "",
        tls_key="k.pem" if tls else "",
    )
    key_file = KeyFile(tmp_path / "k.json")
    if keys:
        key_file.create("k", {Scope.ALL})
    said = exposure_warning(config, key_file.load())
    if warning is None:
        assert said is None
    else:
        assert said is not None and said.startswith("WARNING") and warning in said


def test_serving_on_all_interfaces_without_keys_logs_the_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(host=parse_host("0.0.0.0:1"), models_dir=tmp_path / "models")
    with caplog.at_level(logging.WARNING):
        prepare_to_serve(config)
    assert "reachable from other machines, with no API keys" in caplog.text


def test_an_https_host_without_a_certificate_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(host=parse_host("https://127.0.0.1:1"), models_dir=tmp_path / "models")
    with caplog.at_level(logging.WARNING):
        prepare_to_serve(config)
    assert "serving plain HTTP" in caplog.text
