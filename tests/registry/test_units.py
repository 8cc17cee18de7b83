"""Pieces checked on their own: ed25519, the key file, challenges, names, part plans."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from ollamapy.registry import (
    InsecureProtocolError,
    Remote,
    TransferSettings,
    ed25519,
    load_or_create_key,
)
from ollamapy.registry.auth import parse_challenge
from ollamapy.registry.download import Part

# RFC 8032 section 7.1, tests 1 and 2.
VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), VECTORS)
def test_ed25519_matches_rfc8032(seed: str, public: str, message: str, signature: str) -> None:
    assert ed25519.public_key(bytes.fromhex(seed)).hex() == public
    assert ed25519.sign(bytes.fromhex(seed), bytes.fromhex(message)).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))
    assert not ed25519.verify(bytes.fromhex(public), b"other", bytes.fromhex(signature))


def test_key_file_is_openssh_compatible(tmp_path: Path) -> None:
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        pytest.fail("ssh-keygen is missing: scripts/test.sh installs openssh-client")
    ours = load_or_create_key(tmp_path / "id_ed25519")
    derived = subprocess.run(
        [ssh_keygen, "-y", "-f", str(tmp_path / "id_ed25519")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert derived[:2] == ours.authorized_key.split()
    subprocess.run(
        [ssh_keygen, "-t", "ed25519", "-N", "", "-q", "-f", str(tmp_path / "theirs")], check=True
    )
    theirs = load_or_create_key(tmp_path / "theirs")
    assert (tmp_path / "theirs.pub").read_text().split()[:2] == theirs.authorized_key.split()


def test_key_signature_verifies_with_openssl(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing: scripts/test.sh installs openssl")
    key = load_or_create_key(tmp_path / "id_ed25519")
    header = key.sign_header(b"GET,https://example/token,abc")
    blob, signature = (base64.b64decode(p) for p in header.split(":"))
    assert blob == key.public_blob
    spki = bytes.fromhex("302a300506032b6570032100") + key.public
    (tmp_path / "pub.der").write_bytes(spki)
    (tmp_path / "msg").write_bytes(b"GET,https://example/token,abc")
    (tmp_path / "sig").write_bytes(signature)
    result = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.der"),
         "-keyform", "DER", "-rawin", "-in", str(tmp_path / "msg"),
         "-sigfile", str(tmp_path / "sig")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_existing_key_is_reused_not_replaced(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "k")
    assert load_or_create_key(tmp_path / "k") == first


def test_parse_challenge_quoted_and_bare_values() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example/token",service=registry.example,'
        'scope="repository:a/b:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example/token"
    assert challenge.service == "registry.example"
    assert challenge.scope == "repository:a/b:pull,push"
    assert parse_challenge('Basic realm="basic-realm"').scheme == "basic"


def test_remote_urls_and_insecure_rules() -> None:
    remote = Remote.resolve("example.com:5000/me/model:tag", insecure=False)
    assert str(remote.manifest_url()) == "https://example.com:5000/v2/me/model/manifests/tag"
    assert Remote.resolve("example.com/me/model", insecure=True).scheme == "http"
    assert str(Remote.resolve("llama3.2", False).manifest_url()) == (
        "https://registry.ollama.ai/v2/library/llama3.2/manifests/latest"
    )
    with pytest.raises(InsecureProtocolError, match="insecure protocol http"):
        Remote.resolve("http://example.com/me/model", insecure=False)


@pytest.mark.parametrize(
    ("total", "parts", "size"),
    [
        (100_000_000, 1, 100_000_000),
        (256 * 2**20, 3, 100_000_000),
        (4 * 2**30, 16, 256 * 2**20),
        (10 * 10**9, 19, 512 * 2**20),
    ],
)
def test_default_part_plan(total: int, parts: int, size: int) -> None:
    settings = TransferSettings()
    assert settings.part_size(total) == size
    assert -(-total // settings.part_size(total)) == parts


def test_resume_record_is_ollamas_format() -> None:
    part = Part(2, 1024, 512, 100)
    assert part.to_json() == {"N": 2, "Offset": 1024, "Size": 512, "Completed": 100}
    assert Part.from_json(part.to_json()) == part
    assert Part.from_json({"N": 0, "Offset": -1, "Size": 5, "Completed": 0}) is None
    assert Part.from_json({"N": 0, "Offset": 0, "Size": 5, "Completed": 9}) == Part(0, 0, 5, 5)
