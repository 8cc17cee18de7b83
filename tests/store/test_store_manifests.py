"""Manifests on disk: an Ollama-made store, names and case, writes, copy and delete."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamapy.errors import InvalidNameError, ModelNotFoundError
from ollamapy.store import InvalidManifestError, Manifest, MediaType, Store
from ollamapy.types import Digest, ModelName

BuildModel = Callable[..., Manifest]

CONFIG = (
    b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
    b'"model_type":"134.52M","file_type":"Q4_1","architecture":"amd64","os":"linux",'
    b'"rootfs":{"type":"layers","diff_ids":[]}}\n'
)
WEIGHTS = b"GGUF" + bytes(1000)
TEMPLATE = b"{{ .System }} {{ .Prompt }}"
PARAMS = b'{"stop":["<|im_end|>"],"temperature":0.2}'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ollama_manifest(blobs: list[tuple[str, bytes]]) -> bytes:
    """A manifest written by hand, byte for byte as Ollama's Go code writes one."""
    layers = ",".join(
        f'{{"mediaType":"{media}","digest":"sha256:{_sha(data)}","size":{len(data)}}}'
        for media, data in blobs
    )
    return (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        '"config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
        f'"digest":"sha256:{_sha(CONFIG)}","size":{len(CONFIG)}}},"layers":[{layers}]}}\n'
    ).encode()


@pytest.fixture
def ollama_store(tmp_path: Path) -> Path:
    """A models directory laid out by hand exactly as Ollama lays it out."""
    root = tmp_path / "ollama-models"
    blobs = [
        ("application/vnd.ollama.image.model", WEIGHTS),
        ("application/vnd.ollama.image.template", TEMPLATE),
        ("application/vnd.ollama.image.params", PARAMS),
    ]
    (root / "blobs").mkdir(parents=True)
    for data in (CONFIG, WEIGHTS, TEMPLATE, PARAMS):
        (root / "blobs" / f"sha256-{_sha(data)}").write_bytes(data)
    for parts, layers in (
        (("registry.ollama.ai", "library", "smollm2", "135m"), blobs),
        (("registry.ollama.ai", "me", "Mine", "latest"), blobs[:1]),
        (("example.com:5000", "team", "model", "v1"), blobs[:2]),
    ):
        path = root / "manifests" / Path(*parts)
        path.parent.mkdir(parents=True)
        path.write_bytes(_ollama_manifest(layers))
    return root


def test_ollama_store_lists_with_ollama_digests_and_sizes(ollama_store: Path) -> None:
    entries = {entry.name.display: entry for entry in Store(ollama_store).list_models()}
    assert set(entries) == {"smollm2:135m", "me/Mine:latest", "example.com:5000/team/model:v1"}
    for display, path, blobs in (
        ("smollm2:135m", "registry.ollama.ai/library/smollm2/135m", [WEIGHTS, TEMPLATE, PARAMS]),
        ("me/Mine:latest", "registry.ollama.ai/me/Mine/latest", [WEIGHTS]),
        ("example.com:5000/team/model:v1", "example.com:5000/team/model/v1", [WEIGHTS, TEMPLATE]),
    ):
        manifest_file = ollama_store / "manifests" / path
        entry = entries[display]
        assert entry.digest.hex == _sha(manifest_file.read_bytes())
        assert entry.size == len(CONFIG) + sum(len(blob) for blob in blobs)
        assert entry.modified_at.timestamp() == pytest.approx(manifest_file.stat().st_mtime)
        assert entry.modified_at.tzinfo is not None


def test_ollama_store_shows_layer_contents(ollama_store: Path) -> None:
    store = Store(ollama_store)
    manifest = store.read_manifest(ModelName.parse("smollm2:135m"))
    assert store.read_layer_text(manifest, MediaType.TEMPLATE) == TEMPLATE.decode()
    assert store.read_layer_text(manifest, MediaType.SYSTEM) is None
    assert store.read_params(manifest) == {"stop": ["<|im_end|>"], "temperature": 0.2}
    assert store.read_messages(manifest) == []
    config = store.read_config(manifest)
    assert (config.model_family, config.model_type, config.file_type) == (
        "llama",
        "134.52M",
        "Q4_1",
    )


def test_list_is_newest_first_and_skips_junk(ollama_store: Path) -> None:
    manifests = ollama_store / "manifests"
    old = manifests / "registry.ollama.ai/library/smollm2/135m"
    os.utime(old, (time.time() - 1000, time.time() - 1000))
    (manifests / "registry.ollama.ai/library/smollm2/.tmp-abc").write_bytes(b"{")
    (manifests / "registry.ollama.ai/library/broken").mkdir()
    (manifests / "registry.ollama.ai/library/broken/latest").write_bytes(b"not json")
    (manifests / "stray-file").write_bytes(b"x")
    names = [entry.name.display for entry in Store(ollama_store).list_models()]
    assert names[-1] == "smollm2:135m"
    assert sorted(names) == ["example.com:5000/team/model:v1", "me/Mine:latest", "smollm2:135m"]


def test_missing_root_lists_nothing(tmp_path: Path) -> None:
    assert Store(tmp_path / "absent").list_models() == []


@pytest.mark.parametrize(
    ("lookup", "found_display"),
    [
        ("SmolLM2:135M", "smollm2:135m"),
        ("REGISTRY.ollama.ai/LIBRARY/smollm2:135m", "smollm2:135m"),
        ("me/mine", "me/Mine:latest"),
        ("me/MINE:LATEST", "me/Mine:latest"),
    ],
    ids=["model-and-tag", "host-and-namespace", "lowercase-of-mixed", "uppercase"],
)
def test_lookup_ignores_case(ollama_store: Path, lookup: str, found_display: str) -> None:
    store = Store(ollama_store)
    name = ModelName.parse(lookup)
    assert store.read_manifest(name).layers
    assert store.entry(name).name.display == found_display


def test_write_reuses_existing_spelling(
    ollama_store: Path, store: Store, build_model: BuildModel
) -> None:
    manifest = build_model()  # its blobs go to `store`; the manifest needs them here
    for blob in store.blobs_dir.iterdir():
        shutil.copyfile(blob, ollama_store / "blobs" / blob.name)
    Store(ollama_store).write_manifest(ModelName.parse("ME/mine:Latest"), manifest)
    assert sorted(os.listdir(ollama_store / "manifests/registry.ollama.ai")) == ["library", "me"]
    assert os.listdir(ollama_store / "manifests/registry.ollama.ai/me") == ["Mine"]
    assert os.listdir(ollama_store / "manifests/registry.ollama.ai/me/Mine") == ["latest"]


def test_write_new_name_keeps_given_spelling(store: Store, build_model: BuildModel) -> None:
    manifest = build_model()
    digest = store.write_manifest(ModelName.parse("Me/NewModel:V1"), manifest)
    path = store.manifests_dir / "registry.ollama.ai/Me/NewModel/V1"
    assert path.read_bytes() == manifest.to_bytes()
    assert digest.hex == _sha(path.read_bytes())
    assert store.read_manifest(ModelName.parse("me/newmodel:v1")) == manifest


def test_read_missing_model(store: Store) -> None:
    with pytest.raises(ModelNotFoundError, match="model 'nope:latest' not found") as info:
        store.read_manifest(ModelName.parse("nope"))
    assert info.value.status_code == 404


@pytest.mark.parametrize(
    "name",
    [
        ModelName("registry.ollama.ai", "..", "..", "x"),
        ModelName("registry.ollama.ai", "library", "a/b", "latest"),
        ModelName("/etc", "library", "model", "latest"),
        ModelName("registry.ollama.ai", "library", "model", ".."),
    ],
    ids=["dotdot", "slash", "absolute", "tag-dotdot"],
)
def test_unvalidated_names_cannot_escape(
    store: Store, build_model: BuildModel, name: ModelName
) -> None:
    manifest = build_model()
    for action in (
        lambda: store.write_manifest(name, manifest),
        lambda: store.read_manifest(name),
        lambda: store.delete(name),
    ):
        with pytest.raises(InvalidNameError):
            action()
    assert not store.manifests_dir.exists()


@pytest.mark.parametrize(
    "data",
    [
        b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../../x","size":1}}',
        b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"","size":1}}',
        b'{"schemaVersion":2,"config":{"mediaType":1,"digest":"sha256:' + b"a" * 64 + b'"}}',
        b"not json",
        b" " * (4 * 1024 * 1024 + 1),
    ],
    ids=["traversal-digest", "empty-digest", "wrong-types", "not-json", "huge"],
)
def test_hostile_manifest_bytes_write_nothing(store: Store, data: bytes) -> None:
    with pytest.raises(InvalidManifestError):
        store.write_manifest_bytes(ModelName.parse("evil"), data)
    assert not store.root.exists()


def test_failed_manifest_write_leaves_no_temp_and_no_dirs(
    store: Store, build_model: BuildModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = build_model()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.write_manifest(ModelName.parse("a/b:c"), manifest)
    assert list(store.manifests_dir.rglob("*")) == []


def test_failed_overwrite_keeps_old_manifest(
    store: Store, build_model: BuildModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = ModelName.parse("m")
    old = build_model()
    store.write_manifest(name, old)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.write_manifest(name, build_model({MediaType.SYSTEM: b"new"}))
    monkeypatch.undo()
    assert store.read_manifest(name) == old
    assert [p.name for p in store.manifests_dir.rglob("*") if p.is_file()] == ["latest"]


def test_write_manifest_bytes_keeps_registry_bytes(store: Store, build_model: BuildModel) -> None:
    pretty = build_model().to_bytes().replace(b",", b", ")
    digest = store.write_manifest_bytes(ModelName.parse("m"), pretty)
    assert store.read_manifest_bytes(ModelName.parse("m")) == pretty
    assert digest == Digest.of_bytes(pretty)
    assert store.list_models()[0].digest == digest


def test_copy_gives_same_bytes_and_digest(store: Store, build_model: BuildModel) -> None:
    store.write_manifest(ModelName.parse("src"), build_model())
    store.copy(ModelName.parse("SRC"), ModelName.parse("me/dst:v2"))
    entries = {entry.name.display: entry for entry in store.list_models()}
    assert set(entries) == {"src:latest", "me/dst:v2"}
    assert entries["src:latest"].digest == entries["me/dst:v2"].digest


def test_copy_missing_source(store: Store) -> None:
    with pytest.raises(ModelNotFoundError):
        store.copy(ModelName.parse("absent"), ModelName.parse("dst"))


def test_read_messages_and_licenses(store: Store, build_model: BuildModel) -> None:
    manifest = build_model(
        {
            MediaType.MODEL: b"w",
            MediaType.LICENSE: b"MIT",
            MediaType.MESSAGES: b'[{"role":"user","content":"hi"}]',
            MediaType.SYSTEM: b"be brief",
        }
    )
    assert store.read_layer_texts(manifest, MediaType.LICENSE) == ["MIT"]
    assert store.read_messages(manifest) == [{"role": "user", "content": "hi"}]
    assert store.read_layer_text(manifest, MediaType.SYSTEM) == "be brief"


def test_manifest_round_trip_through_store(store: Store, build_model: BuildModel) -> None:
    manifest = build_model()
    store.write_manifest(ModelName.parse("x"), manifest)
    assert isinstance(store.read_manifest(ModelName.parse("x")), Manifest)
    assert store.read_manifest(ModelName.parse("x")) == manifest


def test_rewriting_an_ollama_manifest_is_byte_identical(ollama_store: Path) -> None:
    path = ollama_store / "manifests/registry.ollama.ai/library/smollm2/135m"
    assert Manifest.parse(path.read_bytes()).to_bytes() == path.read_bytes()
