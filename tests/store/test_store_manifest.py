"""Manifest parsing (hostile input), serialisation (Go-identical bytes) and helpers."""

from __future__ import annotations

import json

import pytest

from ollamapy.store import (
    CONFIG_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    InvalidManifestError,
    Layer,
    Manifest,
    MediaType,
    go_json_bytes,
)
from ollamapy.types import Digest

HEX_A = "a" * 64
HEX_B = "b" * 64
HEX_C = "c" * 64


def _raw(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": f"sha256:{HEX_A}", "size": 10},
        "layers": [
            {"mediaType": MediaType.MODEL.value, "digest": f"sha256:{HEX_B}", "size": 100},
        ],
    }
    raw.update(overrides)
    return raw


def _layer(**fields: object) -> dict[str, object]:
    layer: dict[str, object] = {"mediaType": "x", "digest": f"sha256:{HEX_B}", "size": 1}
    layer.update(fields)
    return layer


def test_to_bytes_matches_go_encoder_exactly() -> None:
    manifest = Manifest(
        Layer(CONFIG_MEDIA_TYPE, Digest(HEX_A), 10),
        (
            Layer(MediaType.MODEL, Digest(HEX_B), 100),
            Layer(MediaType.TEMPLATE, Digest(HEX_C), 5, from_="<base>&"),
        ),
    )
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        '"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
        f'"digest":"sha256:{HEX_A}","size":10}},'
        '"layers":[{"mediaType":"application/vnd.ollama.image.model",'
        f'"digest":"sha256:{HEX_B}","size":100}},'
        '{"mediaType":"application/vnd.ollama.image.template",'
        f'"digest":"sha256:{HEX_C}","size":5,"from":"\\u003cbase\\u003e\\u0026"}}]}}\n'
    ).encode()
    assert manifest.to_bytes() == expected


def test_parse_round_trips() -> None:
    manifest = Manifest.parse(json.dumps(_raw()).encode())
    assert Manifest.parse(manifest.to_bytes()) == manifest
    assert manifest.config.digest == Digest(HEX_A)
    assert manifest.layers[0].media_type == MediaType.MODEL
    assert manifest.total_size == 110
    assert manifest.digests == {Digest(HEX_A), Digest(HEX_B)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (json.dumps(_raw(schemaVersion=1)).encode(), "schemaVersion"),
        (json.dumps(_raw(schemaVersion="2")).encode(), "schemaVersion"),
        (json.dumps(_raw(schemaVersion=True)).encode(), "schemaVersion"),
        (json.dumps(_raw(mediaType=7)).encode(), "mediaType"),
        (json.dumps(_raw(config=None)).encode(), "config must be an object"),
        (json.dumps(_raw(config=_layer(digest="sha256:../../x"))).encode(), "config.digest"),
        (json.dumps(_raw(layers=[_layer(digest="sha256:../../x")])).encode(), "digest"),
        (json.dumps(_raw(layers=[_layer(digest="")])).encode(), "layers[0].digest"),
        (json.dumps(_raw(layers=[_layer(digest=None)])).encode(), "layers[0].digest"),
        (json.dumps(_raw(layers=[_layer(digest=f"md5:{HEX_A}")])).encode(), "digest"),
        (json.dumps(_raw(layers=[_layer(digest=f"sha256:{HEX_A.upper()}")])).encode(), "digest"),
        (json.dumps(_raw(layers=[_layer(mediaType=5)])).encode(), "mediaType must be a string"),
        (json.dumps(_raw(layers=[_layer(mediaType=None)])).encode(), "mediaType must be"),
        (json.dumps(_raw(layers=[_layer(size=-1)])).encode(), "size must be"),
        (json.dumps(_raw(layers=[_layer(size=1.0)])).encode(), "size must be"),
        (json.dumps(_raw(layers=[_layer(size="1")])).encode(), "size must be"),
        (json.dumps(_raw(layers=[_layer(size=True)])).encode(), "size must be"),
        (json.dumps(_raw(layers=[_layer(size=2**63)])).encode(), "size must be"),
        (json.dumps(_raw(layers=[_layer(size=10**400)])).encode(), "size must be"),
        (json.dumps(_raw(layers=[_layer(**{"from": 3})])).encode(), "from must be"),
        (json.dumps(_raw(layers={"0": _layer()})).encode(), "layers must be an array"),
        (json.dumps(_raw(layers=["x"])).encode(), "layers[0] must be an object"),
        (b" " * (MAX_MANIFEST_BYTES + 1), "limit"),
    ],
    ids=[
        "not-json",
        "array",
        "bad-utf8",
        "deep-nesting",
        "schema-1",
        "schema-string",
        "schema-bool",
        "media-type-int",
        "config-missing",
        "config-digest-traversal",
        "layer-digest-traversal",
        "layer-digest-empty",
        "layer-digest-null",
        "layer-digest-md5",
        "layer-digest-uppercase",
        "layer-media-type-int",
        "layer-media-type-null",
        "size-negative",
        "size-float",
        "size-string",
        "size-bool",
        "size-over-int64",
        "size-huge",
        "from-int",
        "layers-object",
        "layer-string",
        "too-large",
    ],
)
def test_hostile_manifests_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(InvalidManifestError, match=message.replace("[", r"\[")) as info:
        Manifest.parse(data)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("layers", "expected"),
    [(None, ()), ([], ())],
    ids=["null-layers", "empty-layers"],
)
def test_empty_layers_are_accepted(layers: object, expected: tuple[Layer, ...]) -> None:
    assert Manifest.parse(json.dumps(_raw(layers=layers)).encode()).layers == expected


def test_unknown_keys_and_media_types_are_kept_compatible() -> None:
    raw = _raw(layers=[_layer(mediaType="application/vnd.ollama.image.tensor", extra=1)])
    raw["annotations"] = {"x": "y"}
    manifest = Manifest.parse(json.dumps(raw).encode())
    assert manifest.layers[0].media_type == "application/vnd.ollama.image.tensor"


@pytest.mark.parametrize(
    ("media_type", "expected_sizes", "last_size"),
    [
        (MediaType.LICENSE, (2, 3), 3),
        (MediaType.TEMPLATE, (4,), 4),
        (MediaType.SYSTEM, (), None),
    ],
    ids=["several", "one", "none"],
)
def test_layer_selection(
    media_type: MediaType, expected_sizes: tuple[int, ...], last_size: int | None
) -> None:
    manifest = Manifest(
        Layer(CONFIG_MEDIA_TYPE, Digest(HEX_A), 1),
        (
            Layer(MediaType.LICENSE, Digest(HEX_B), 2),
            Layer(MediaType.TEMPLATE, Digest(HEX_C), 4),
            Layer(MediaType.LICENSE, Digest(HEX_C), 3),
        ),
    )
    assert tuple(layer.size for layer in manifest.layers_of(media_type)) == expected_sizes
    last = manifest.last_layer(media_type)
    assert (last.size if last else None) == last_size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": "x<y>&z"}, b'{"a":"x\\u003cy\\u003e\\u0026z"}\n'),
        ({"a": "\u2028\u2029"}, b'{"a":"\\u2028\\u2029"}\n'),
        ({"a": "é", "b": [1, None]}, '{"a":"é","b":[1,null]}\n'.encode()),
        ({"a": "\x01\n"}, b'{"a":"\\u0001\\n"}\n'),
    ],
    ids=["html", "line-separators", "unicode-raw", "control"],
)
def test_go_json_bytes(value: object, expected: bytes) -> None:
    assert go_json_bytes(value) == expected
