"""Blob writes: hashing, verification, atomicity, idempotence, special-file refusal."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamapy.errors import BadRequestError, InvalidDigestError, NotFoundError
from ollamapy.store import DigestMismatchError, Store
from ollamapy.types import Digest


def _digest(data: bytes) -> Digest:
    return Digest(hashlib.sha256(data).hexdigest())


def _blob_dir_names(store: Store) -> list[str]:
    return sorted(os.listdir(store.blobs_dir))


@pytest.mark.parametrize(
    "chunks",
    [[b""], [b"hello"], [b"he", b"", b"llo"], [b"x" * 3_000_000]],
    ids=["empty", "one-chunk", "many-chunks", "large"],
)
def test_write_blob_hashes_and_stores(store: Store, chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    digest, size = store.write_blob(chunks)
    assert (digest, size) == (_digest(data), len(data))
    assert store.blob_path(digest) == store.blobs_dir / f"sha256-{digest.hex}"
    assert store.blob_path(digest).read_bytes() == data
    assert store.has_blob(digest)
    assert _blob_dir_names(store) == [digest.filename]
    assert store.blob_path(digest).stat().st_mode & 0o777 == 0o644


def test_write_blob_with_matching_expected(store: Store) -> None:
    assert store.write_blob([b"abc"], expected=_digest(b"abc")) == (_digest(b"abc"), 3)


def test_digest_mismatch_leaves_nothing(store: Store) -> None:
    with pytest.raises(DigestMismatchError, match="digest mismatch") as info:
        store.write_blob([b"abc"], expected=_digest(b"abd"))
    assert info.value.status_code == 400
    assert _blob_dir_names(store) == []
    assert not store.has_blob(_digest(b"abc"))


def test_failing_stream_leaves_nothing(store: Store) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"partial data"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.write_blob(chunks())
    assert _blob_dir_names(store) == []


def test_write_blob_is_idempotent(store: Store) -> None:
    first = store.write_blob([b"same"])
    inode = store.blob_path(first[0]).stat().st_ino
    assert store.write_blob([b"sa", b"me"]) == first
    assert store.blob_path(first[0]).stat().st_ino == inode
    assert _blob_dir_names(store) == [first[0].filename]


def test_blob_path_revalidates_digest(store: Store) -> None:
    with pytest.raises(InvalidDigestError):
        store.blob_path(Digest("../../etc/passwd"))


def test_has_blob_false_for_missing(store: Store) -> None:
    assert not store.has_blob(_digest(b"nothing"))


def test_write_blob_from_file(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + b"\0" * 5000)
    digest, size = store.write_blob_from_file(source)
    assert (digest, size) == (_digest(source.read_bytes()), 5004)
    assert store.blob_path(digest).read_bytes() == source.read_bytes()
    source.write_bytes(b"changed")  # the store keeps its own copy
    assert store.blob_path(digest).read_bytes().startswith(b"GGUF")


def test_write_blob_from_file_mismatch_leaves_nothing(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    with pytest.raises(DigestMismatchError):
        store.write_blob_from_file(source, expected=_digest(b"other"))
    assert _blob_dir_names(store) == []


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: os.mkfifo(p), BadRequestError),
        (lambda p: p.mkdir(), BadRequestError),
        (lambda p: p.symlink_to("/dev/null"), BadRequestError),
        (lambda p: None, NotFoundError),
    ],
    ids=["fifo", "directory", "symlink-to-device", "missing"],
)
def test_write_blob_from_file_refuses_non_regular(
    store: Store, tmp_path: Path, make: object, error: type[Exception]
) -> None:
    path = tmp_path / "special"
    make(path)  # type: ignore[operator]
    with pytest.raises(error):
        store.write_blob_from_file(path)  # a FIFO would block forever if opened
    assert not store.blobs_dir.exists() or _blob_dir_names(store) == []


@pytest.mark.parametrize(
    ("data", "reader", "expected"),
    [
        (b"{{ .Prompt }}", "text", "{{ .Prompt }}"),
        (b"caf\xc3\xa9 \xff", "text", "café \ufffd"),
        (b'{"stop":["a"]}', "json", {"stop": ["a"]}),
    ],
    ids=["text", "text-bad-utf8", "json"],
)
def test_read_blob(store: Store, data: bytes, reader: str, expected: object) -> None:
    digest, _ = store.write_blob([data])
    read = store.read_blob_text if reader == "text" else store.read_blob_json
    assert read(digest) == expected


@pytest.mark.parametrize(
    ("data", "limit", "error", "message"),
    [
        (None, 100, NotFoundError, "not found"),
        (b"x" * 11, 10, BadRequestError, "larger than"),
        (b"{nope", 100, BadRequestError, "not valid JSON"),
    ],
    ids=["missing", "over-limit", "bad-json"],
)
def test_read_blob_errors(
    store: Store, data: bytes | None, limit: int, error: type[Exception], message: str
) -> None:
    digest = store.write_blob([data])[0] if data is not None else _digest(b"absent")
    with pytest.raises(error, match=message):
        store.read_blob_json(digest, limit=limit)


def test_partial_path_is_reserved_name(store: Store) -> None:
    digest = _digest(b"x")
    assert store.partial_path(digest).name == f"sha256-{digest.hex}-partial"
    assert store.partial_path(digest, "-3").name == f"sha256-{digest.hex}-partial-3"
    with pytest.raises(BadRequestError):
        store.partial_path(digest, "/../../x")


@pytest.mark.parametrize("reflink_works", [True, False], ids=["reflink", "copy"])
def test_write_blob_from_file_hashes_the_stored_copy(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reflink_works: bool
) -> None:
    source = tmp_path / "src"
    source.write_bytes(b"weights" * 1000)

    def fake_reflink(source_fd: int, target_fd: int) -> bool:
        if reflink_works:
            os.write(target_fd, os.read(source_fd, 1 << 20))
        return reflink_works

    monkeypatch.setattr("ollamapy.store.store.try_reflink", fake_reflink)
    digest, size = store.write_blob_from_file(source)
    assert (digest, size) == (_digest(source.read_bytes()), 7000)
    assert store.blob_path(digest).read_bytes() == source.read_bytes()


def test_blob_size(store: Store) -> None:
    digest, _ = store.write_blob([b"12345"])
    assert store.blob_size(digest) == 5
    with pytest.raises(NotFoundError):
        store.blob_size(_digest(b"absent"))
