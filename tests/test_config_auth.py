"""The key and TLS settings in `Config`: where the key file lives, and TLS's two variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.config import Config, keys_file
from ollamapy.errors import BadRequestError


def test_the_key_file_is_beside_the_store(tmp_path: Path) -> None:
    env = {"OLLAMA_MODELS": str(tmp_path / "store" / "models")}
    assert Config.from_env(env).keys_file == tmp_path / "store" / "keys.json"
    assert keys_file(env) == tmp_path / "store" / "keys.json"


def test_by_default_it_is_ollama_home(hermetic_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_MODELS")
    assert keys_file() == hermetic_env / ".ollama" / "keys.json"
    assert Config.from_env().keys_file == hermetic_env / ".ollama" / "keys.json"


def test_tls_and_keys_required_are_read() -> None:
    config = Config.from_env(
        {"OLLAMA_TLS_CERT": "/c.pem", "OLLAMA_TLS_KEY": "/k.pem", "OLLAMA_API_KEYS_REQUIRED": "1"}
    )
    assert (config.tls_cert, config.tls_key, config.api_keys_required) == ("/c.pem", "/k.pem", True)
    assert Config.from_env({}).tls_cert == "" and not Config.from_env({}).api_keys_required


@pytest.mark.parametrize("env", [{"OLLAMA_TLS_CERT": "/c.pem"}, {"OLLAMA_TLS_KEY": "/k.pem"}])
def test_a_cert_without_a_key_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(BadRequestError, match="must be set together"):
        Config.from_env(env)
