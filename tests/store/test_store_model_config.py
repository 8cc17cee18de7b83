"""ModelConfig: Ollama's ConfigV2 JSON read leniently for missing keys, strictly for types."""

from __future__ import annotations

import json

import pytest

from ollamapy.store import InvalidConfigError, ModelConfig

OLLAMA_CONFIG = (
    b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
    b'"model_type":"134.52M","file_type":"Q4_1","renderer":"r","parser":"p",'
    b'"requires":"0.6.0","architecture":"amd64","os":"linux",'
    b'"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}\n'
)


def test_parses_and_rewrites_ollama_config_byte_for_byte() -> None:
    config = ModelConfig.parse(OLLAMA_CONFIG)
    assert (config.model_family, config.model_type, config.file_type) == (
        "llama",
        "134.52M",
        "Q4_1",
    )
    assert config.model_families == ("llama",)
    assert config.diff_ids == ("sha256:aa", "sha256:bb")
    assert config.to_bytes() == OLLAMA_CONFIG


def test_empty_lists_and_optional_fields_follow_go_encoding() -> None:
    config = ModelConfig(model_family="qwen2", model_type="0.5B", file_type="F16")
    assert config.to_bytes() == (
        b'{"model_format":"gguf","model_family":"qwen2","model_families":null,'
        b'"model_type":"0.5B","file_type":"F16","architecture":"amd64","os":"linux",'
        b'"rootfs":{"type":"layers","diff_ids":null}}\n'
    )


def test_missing_keys_take_zero_values() -> None:
    assert ModelConfig.parse(b"{}") == ModelConfig(
        model_format="", architecture="", os="", rootfs_type=""
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"nope", "not valid JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"model_type": 5}).encode(), "model_type"),
        (json.dumps({"model_families": "llama"}).encode(), "model_families"),
        (json.dumps({"model_families": [1]}).encode(), "model_families"),
        (json.dumps({"rootfs": []}).encode(), "rootfs"),
        (json.dumps({"context_length": "4096"}).encode(), "context_length"),
        (b" " * (5 * 1024 * 1024), "larger"),
    ],
    ids=[
        "not-json",
        "array",
        "type-int",
        "families-string",
        "families-ints",
        "rootfs-array",
        "ctx-string",
        "too-large",
    ],
)
def test_bad_configs_are_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        ModelConfig.parse(raw)
