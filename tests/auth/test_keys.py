"""The key file: hashed keys, mode 0600, atomic replacement, expiry, names and locking."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ollamapy.auth import KEY_PREFIX, KeyFile, KeyFileError, KeyRing, Scope, hash_key, parse_expiry
from ollamapy.errors import BadRequestError, NotFoundError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def key_file(tmp_path: Path) -> KeyFile:
    return KeyFile(tmp_path / "ollama" / "keys.json")


def test_a_new_key_has_the_prefix_and_256_random_bits(key_file: KeyFile) -> None:
    first, _ = key_file.create("a", {Scope.ALL})
    second, _ = key_file.create("b", {Scope.ALL})
    assert first.startswith(KEY_PREFIX) and second.startswith(KEY_PREFIX)
    assert len(first) - len(KEY_PREFIX) == 43  # base64url of 32 bytes
    assert first != second


def test_the_file_keeps_only_the_hash_never_the_key(key_file: KeyFile) -> None:
    secret, key = key_file.create("ci", {Scope.GENERATE})
    text = key_file.path.read_text()
    assert secret not in text
    assert secret[len(KEY_PREFIX) + 4 :] not in text  # not even the part after the hint
    digest = "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert key.digest == digest == hash_key(secret)
    assert json.loads(text)["keys"][0]["hash"] == digest


def test_the_file_is_readable_by_its_owner_only(key_file: KeyFile) -> None:
    key_file.create("ci", {Scope.ALL})
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600
    key_file.create("other", {Scope.ALL})  # a rewrite keeps the mode
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600


def test_a_write_replaces_the_file_by_rename_and_leaves_no_temp(key_file: KeyFile) -> None:
    key_file.create("one", {Scope.ALL})
    before = key_file.path.stat().st_ino
    key_file.create("two", {Scope.ALL})
    assert key_file.path.stat().st_ino != before  # a new file renamed over, not rewritten
    leftovers = [p.name for p in key_file.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_failed_write_leaves_the_old_file_whole(
    key_file: KeyFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file.create("one", {Scope.ALL})
    before = key_file.path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        key_file.create("two", {Scope.ALL})
    assert key_file.path.read_bytes() == before
    assert [p.name for p in key_file.path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_creates_lose_no_key(key_file: KeyFile) -> None:
    names = [f"k{i}" for i in range(12)]
    threads = [threading.Thread(target=key_file.create, args=(name, {Scope.ALL})) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(key.name for key in key_file.load().keys) == sorted(names)


def test_a_key_is_found_by_its_secret_and_by_nothing_else(key_file: KeyFile) -> None:
    secret, key = key_file.create("ci", {Scope.EMBED}, ["bge*"])
    other, _ = key_file.create("other", {Scope.ALL})
    ring = key_file.load()
    assert ring.find(secret) == key
    assert ring.find(other) is not None and ring.find(other) != key
    assert ring.find(secret[:-1]) is None
    assert ring.find(secret + "x") is None
    assert ring.find("") is None


def test_names_are_unique_and_plain(key_file: KeyFile) -> None:
    key_file.create("ci", {Scope.ALL})
    with pytest.raises(BadRequestError, match="already exists"):
        key_file.create("ci", {Scope.ALL})
    for bad in ("", "a b", "../x", "-x", "x" * 65):
        with pytest.raises(BadRequestError, match="invalid key name"):
            key_file.create(bad, {Scope.ALL})


def test_revoke_removes_the_key_and_an_unknown_name_is_a_404(key_file: KeyFile) -> None:
    secret, _ = key_file.create("ci", {Scope.ALL})
    key_file.create("keep", {Scope.ALL})
    assert key_file.revoke("ci").name == "ci"
    ring = key_file.load()
    assert ring.find(secret) is None and [k.name for k in ring.keys] == ["keep"]
    with pytest.raises(NotFoundError):
        key_file.revoke("ci")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("2w", 14 * 86400), ("12h", 43200), ("1h30m", 5400), ("90s", 90)],
    ids=["days", "weeks", "hours", "go-duration", "seconds"],
)
def test_expiry_durations(text: str, seconds: int) -> None:
    assert parse_expiry(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["0s", "-5m", "soon", "", "1000000d"], ids=str)
def test_a_bad_expiry_is_refused(text: str) -> None:
    with pytest.raises(BadRequestError):
        parse_expiry(text)


def test_a_key_expires_at_its_time(key_file: KeyFile) -> None:
    _, key = key_file.create("ci", {Scope.ALL}, expires_in=timedelta(hours=1), now=NOW)
    stored = key_file.load().keys[0]
    assert stored.expires_at == NOW + timedelta(hours=1) == key.expires_at
    assert not stored.expired(NOW + timedelta(minutes=59))
    assert stored.expired(NOW + timedelta(hours=1))
    _, forever = key_file.create("forever", {Scope.ALL}, now=NOW)
    assert not forever.expired(NOW + timedelta(days=10_000))


def test_no_file_is_no_keys_and_keys_are_not_required(key_file: KeyFile) -> None:
    assert key_file.load() == KeyRing() and not KeyRing().active


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"keys": 3}',
        '{"keys": [{"name": "x"}]}',
        '{"keys": [{"name": "x", "hash": '
        '"h", "scopes": ["root"], "created_at": "2026-01-01T00:00:00"}]}',
    ],
    ids=["truncated", "not-an-object", "keys-not-a-list", "entry-missing-fields", "bad-scope"],
)
def test_a_malformed_file_is_an_error_not_an_empty_ring(key_file: KeyFile, text: str) -> None:
    key_file.path.parent.mkdir(parents=True)
    key_file.path.write_text(text)
    with pytest.raises(KeyFileError):
        key_file.load()


def test_a_locked_ring_is_active_and_admits_nothing(key_file: KeyFile) -> None:
    secret, key = key_file.create("ci", {Scope.ALL})
    locked = KeyRing((key,), locked=True)
    assert locked.active and locked.find(secret) is None


def test_every_stored_hash_is_compared_in_constant_time_whatever_matches(
    key_file: KeyFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit: the first key matching costs as many comparisons as none matching."""
    import hmac

    from ollamapy.auth import keys as keys_module

    secrets_ = [key_file.create(f"k{i}", {Scope.ALL})[0] for i in range(5)]
    ring = key_file.load()
    compared: list[bytes] = []
    original = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return original(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    for presented in (secrets_[0], secrets_[4], "olk_nothing"):
        compared.clear()
        ring.find(presented)
        assert len(compared) == 5
