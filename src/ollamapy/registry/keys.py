"""Ollama's identity key: `~/.ollama/id_ed25519`, an unencrypted OpenSSH ed25519 key.

Ollama creates the key on first use and proves it to ollama.com by signing each token
request; the `Authorization` header of that request is `<public key>:<signature>`, both
base64, the public key in SSH wire format (the middle field of `id_ed25519.pub`). The
file format (PROTOCOL.key in OpenSSH) is written and read here so a key made by Ollama
or `ssh-keygen -t ed25519 -N ''` works, and ours works with them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ollamapy.registry import ed25519
from ollamapy.registry.errors import RegistryError

KEY_NAME = "id_ed25519"
_KEY_TYPE = b"ssh-ed25519"
_MAGIC = b"openssh-key-v1\x00"
_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_END = "-----END OPENSSH PRIVATE KEY-----"
_MAX_KEY_FILE = 64 * 1024


def default_key_path() -> Path:
    """Where Ollama keeps its key (HOME is read at call time, never at import)."""
    return Path.home() / ".ollama" / KEY_NAME


@dataclass(frozen=True)
class IdentityKey:
    """An ed25519 key pair; the seed never appears in `repr`."""

    seed: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> IdentityKey:
        seed = secrets.token_bytes(32)
        return cls(seed, ed25519.public_key(seed))

    @property
    def public_blob(self) -> bytes:
        """The public key in SSH wire format."""
        return _string(_KEY_TYPE) + _string(self.public)

    @property
    def authorized_key(self) -> str:
        """The `id_ed25519.pub` line: `ssh-ed25519 <base64 blob>`."""
        return f"ssh-ed25519 {base64.b64encode(self.public_blob).decode()}"

    def sign_header(self, data: bytes) -> str:
        """Ollama's signature header value: `<base64 public blob>:<base64 signature>`."""
        signature = ed25519.sign(self.seed, data)
        blob = base64.b64encode(self.public_blob).decode()
        return f"{blob}:{base64.b64encode(signature).decode()}"

    def to_openssh(self, comment: str = "") -> str:
        """The private key as an unencrypted OpenSSH PEM block."""
        check = secrets.token_bytes(4)
        private = (
            check
            + check
            + _string(_KEY_TYPE)
            + _string(self.public)
            + _string(self.seed + self.public)
            + _string(comment.encode())
        )
        private += bytes(range(1, 1 + (-len(private) % 8)))
        body = (
            _MAGIC
            + _string(b"none")
            + _string(b"none")
            + _string(b"")
            + struct.pack(">I", 1)
            + _string(self.public_blob)
            + _string(private)
        )
        encoded = base64.b64encode(body).decode()
        lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
        return "\n".join([_BEGIN, *lines, _END]) + "\n"

    @classmethod
    def from_openssh(cls, text: str) -> IdentityKey:
        """Parse an unencrypted OpenSSH ed25519 private key; anything else is refused."""
        try:
            body = text.strip()
            if not (body.startswith(_BEGIN) and body.endswith(_END)):
                raise ValueError("not an OpenSSH private key")
            data = base64.b64decode("".join(body[len(_BEGIN) : -len(_END)].split()))
            return cls._from_body(data)
        except (ValueError, struct.error, IndexError):
            raise RegistryError("invalid ollama identity key: not an ed25519 OpenSSH key") from None

    @classmethod
    def _from_body(cls, data: bytes) -> IdentityKey:
        if not data.startswith(_MAGIC):
            raise ValueError("bad magic")
        reader = _Reader(data[len(_MAGIC) :])
        if reader.string() != b"none" or reader.string() != b"none":
            raise ValueError("encrypted keys are not supported")
        reader.string()
        if reader.uint32() != 1:
            raise ValueError("exactly one key expected")
        reader.string()
        private = _Reader(reader.string())
        if private.uint32() != private.uint32():
            raise ValueError("check bytes differ (wrong passphrase or corrupt)")
        if private.string() != _KEY_TYPE:
            raise ValueError("not an ed25519 key")
        public = private.string()
        secret = private.string()
        if len(public) != 32 or len(secret) != 64 or secret[32:] != public:
            raise ValueError("malformed ed25519 key")
        if ed25519.public_key(secret[:32]) != public:
            raise ValueError("public key does not match the private key")
        return cls(secret[:32], public)


def load_or_create_key(path: Path | None = None) -> IdentityKey:
    """The identity key at `path`, created (0600, with a `.pub` beside it) when absent."""
    path = path or default_key_path()
    try:
        with path.open("r", encoding="ascii", errors="replace") as handle:
            return IdentityKey.from_openssh(handle.read(_MAX_KEY_FILE))
    except FileNotFoundError:
        pass
    key = IdentityKey.generate()
    _write_new_key(path, key)
    return load_or_create_key(path)


def _write_new_key(path: Path, key: IdentityKey) -> None:
    """Create the key file exclusively so two first uses cannot overwrite each other."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.to_openssh())
    with contextlib.suppress(OSError):
        path.with_name(path.name + ".pub").write_text(key.authorized_key + "\n")


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    """Sequential reader of SSH wire-format fields."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def uint32(self) -> int:
        (value,) = struct.unpack_from(">I", self._data, self._pos)
        self._pos += 4
        return int(value)

    def string(self) -> bytes:
        length = self.uint32()
        end = self._pos + length
        if end > len(self._data):
            raise ValueError("truncated field")
        value = self._data[self._pos : end]
        self._pos = end
        return value
