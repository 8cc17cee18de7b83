"""The key file: API keys stored hashed, written atomically with mode 0600.

A key is `olk_` followed by 43 URL-safe characters (32 random bytes from `secrets`), shown
once when created. The file keeps only its SHA-256. A slow password hash (bcrypt, argon2)
exists to make guessing a low-entropy password expensive; a 256-bit random key cannot be
guessed, and finding a preimage of its SHA-256 is infeasible, so a fast hash protects it as
well and costs about a microsecond per request. With no guessable input there is nothing for
a salt or a pepper to add either.

The file lives beside the store (`models`' parent: `~/.ollama/keys.json`). Every change
takes a lock (`keys.json.lock`), reads the file, writes a temporary file in the same
directory (mode 0600 from its creation) and renames it over the old one, so a reader (the
server, reloading on change) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ollamapy.auth.scopes import Scope, covers, model_allowed
from ollamapy.errors import BadRequestError, NotFoundError, OllamaError
from ollamapy.types.duration import parse_duration

KEY_PREFIX = "olk_"
_SECRET_BYTES = 32
_HINT_CHARS = 4
_FORMAT_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_DAYS = re.compile(r"(\d+)([dw])")


class KeyFileError(OllamaError):
    """The key file exists but cannot be read as one (the server then admits no key)."""


def new_secret() -> str:
    """A fresh key: the prefix (so scanners and people recognise it) and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_key(secret: str) -> str:
    """`sha256:<hex>` of the key's UTF-8 bytes (see the module docstring for why SHA-256)."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_expiry(text: str) -> timedelta:
    """`30d`, `2w`, or a Go duration (`12h`, `90m`, `1h30m`): how long a new key lives."""
    text = text.strip()
    days = _DAYS.fullmatch(text)
    seconds: float
    if days:
        seconds = int(days.group(1)) * (86_400 if days.group(2) == "d" else 7 * 86_400)
    else:
        seconds = parse_duration(text) if text else 0.0
    if not 0 < seconds < 100 * 365 * 86_400:
        raise BadRequestError(f"invalid expiry {text!r}: use a positive duration like 30d or 12h")
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as stored: never its secret, only the secret's hash and first characters."""

    name: str
    digest: str
    hint: str
    scopes: frozenset[Scope]
    models: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def allows_scope(self, needed: Scope | None) -> bool:
        return covers(self.scopes, needed)

    def allows_model(self, name: str) -> bool:
        return model_allowed(self.models, name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hash": self.digest,
            "hint": self.hint,
            "scopes": sorted(scope.value for scope in self.scopes),
            "models": list(self.models),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def from_json(cls, data: Any) -> ApiKey:
        if not isinstance(data, dict):
            raise KeyFileError("a key entry is not an object")
        try:
            expires = data.get("expires_at")
            return cls(
                name=str(data["name"]),
                digest=str(data["hash"]),
                hint=str(data.get("hint", "")),
                scopes=frozenset(Scope(s) for s in data["scopes"]),
                models=tuple(str(m) for m in data.get("models") or ()),
                created_at=_utc(datetime.fromisoformat(str(data["created_at"]))),
                expires_at=_utc(datetime.fromisoformat(str(expires))) if expires else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyFileError(f"a key entry is malformed: {exc}") from None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys a server admits. `locked` means the file could not be read: admit none."""

    keys: tuple[ApiKey, ...] = ()
    locked: bool = False

    @property
    def active(self) -> bool:
        """Whether keys are required: some key exists (even expired), or the file is bad."""
        return bool(self.keys) or self.locked

    def find(self, secret: str) -> ApiKey | None:
        """The key whose hash matches, compared in constant time against every key.

        Every stored digest is compared (no early exit), so the time taken says nothing
        about which key, or how much of one, matched.
        """
        if self.locked:
            return None
        presented = hash_key(secret).encode()
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(presented, key.digest.encode()):
                found = key
        return found


class KeyFile:
    """The key file at `path`: load it, and create or revoke keys in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> KeyRing:
        """The keys in the file; no file is no keys; a malformed file raises `KeyFileError`."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return KeyRing()
        except OSError as exc:
            raise KeyFileError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyFileError(f"{self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise KeyFileError(f"{self.path} has no list of keys")
        return KeyRing(tuple(ApiKey.from_json(entry) for entry in data["keys"]))

    def create(
        self,
        name: str,
        scopes: Iterable[Scope],
        models: Iterable[str] = (),
        expires_in: timedelta | None = None,
        now: datetime | None = None,
    ) -> tuple[str, ApiKey]:
        """Add a key and return its secret (shown once) with what was stored."""
        if not _NAME.fullmatch(name):
            raise BadRequestError(
                f"invalid key name {name!r}: use letters, digits, '.', '_', '-' or '@' (max 64)"
            )
        scopes = frozenset(scopes)
        if not scopes:
            raise BadRequestError("a key needs at least one scope")
        now = now or datetime.now(UTC)
        secret = new_secret()
        key = ApiKey(
            name=name,
            digest=hash_key(secret),
            hint=secret[: len(KEY_PREFIX) + _HINT_CHARS],
            scopes=scopes,
            models=tuple(m.strip() for m in models if m.strip()),
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
        )
        with self._locked():
            ring = self.load()
            if any(existing.name == name for existing in ring.keys):
                raise BadRequestError(f"a key named {name!r} already exists")
            self._write((*ring.keys, key))
        return secret, key

    def revoke(self, name: str) -> ApiKey:
        """Remove the key called `name`; a name with no key is a 404."""
        with self._locked():
            ring = self.load()
            kept = tuple(key for key in ring.keys if key.name != name)
            if len(kept) == len(ring.keys):
                raise NotFoundError(f"no key named {name!r}")
            self._write(kept)
        return next(key for key in ring.keys if key.name == name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two `ollama keys create` at once must not lose a key)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, keys: Iterable[ApiKey]) -> None:
        """Temp file (0600 from creation) in the same directory, fsync, rename, fsync dir."""
        body = {"version": _FORMAT_VERSION, "keys": [key.to_json() for key in keys]}
        fd, temp = tempfile.mkstemp(prefix=".keys-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                json.dump(body, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def without_expired(ring: KeyRing, now: datetime) -> KeyRing:
    """The ring less its expired keys (for display; the server checks expiry per request)."""
    return replace(ring, keys=tuple(key for key in ring.keys if not key.expired(now)))
