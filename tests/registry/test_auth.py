"""Basic auth against htpasswd, the bearer token flow, and Ollama's signed token requests."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import pytest

from ollamapy.registry import (
    RegistryError,
    RegistryUnauthorizedError,
    default_key_path,
    load_or_create_key,
    pull_model,
    push_model,
)
from ollamapy.store import Store
from tests.registry.conftest import PASSWORD, USER, collect, make_model, options
from tests.registry.servers import TOKEN, Proxy, Registry


async def test_basic_auth_registry_refuses_without_credentials(
    auth_registry: Registry, store: Store
) -> None:
    name, _ = make_model(store, f"{auth_registry.host}/me/locked:v1")
    with pytest.raises(RegistryUnauthorizedError, match="unauthorized") as caught:
        await collect(push_model(store, str(name), options()))
    assert caught.value.status_code == 401


async def test_basic_auth_wrong_password_is_unauthorized_and_not_echoed(
    auth_registry: Registry, store: Store
) -> None:
    name, _ = make_model(store, f"{auth_registry.host}/me/locked:v1")
    secret = "wrong-but-secret-value"
    with pytest.raises(RegistryUnauthorizedError) as caught:
        await collect(push_model(store, str(name), options(username=USER, password=secret)))
    assert secret not in str(caught.value)
    assert secret not in repr(options(username=USER, password=secret))


async def test_basic_auth_with_credentials_pushes_and_pulls(
    auth_registry: Registry, store: Store, other_store: Store
) -> None:
    name, manifest = make_model(store, f"{auth_registry.host}/me/open:v1")
    creds = options(username=USER, password=PASSWORD)
    await collect(push_model(store, str(name), creds))  # relative Location headers here

    with pytest.raises(RegistryUnauthorizedError):
        await collect(pull_model(other_store, str(name), options()))
    await collect(pull_model(other_store, str(name), creds))

    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    assert other_store.read_manifest(name).digests == manifest.digests


async def test_bearer_token_flow_with_ollama_signature(
    proxy: Proxy, store: Store, other_store: Store, hermetic_env: Path
) -> None:
    name, _ = make_model(store, f"{proxy.host}/me/tokened:v1")
    await collect(push_model(store, str(name), options()))
    proxy.script.require_token = True
    proxy.script.token_verify_signature = True
    assert not default_key_path().exists()

    await collect(pull_model(other_store, str(name), options()))

    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)
    request = proxy.script.token_requests[0]
    query = parse_qs(request.query)
    assert query["service"] == ["test-registry"]
    assert query["scope"] == ["repository:me/tokened:pull"]
    assert {"ts", "nonce"} <= query.keys()
    key = load_or_create_key()  # created on first use, at Ollama's path, private
    assert default_key_path() == hermetic_env / ".ollama" / "id_ed25519"
    assert default_key_path().stat().st_mode & 0o077 == 0
    assert request.headers["authorization"].startswith(key.authorized_key.split()[1] + ":")
    authed = [r for r in proxy.script.log if "authorization" in r.headers]
    assert authed and all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in authed)


async def test_bearer_token_flow_with_basic_credentials(
    proxy: Proxy, store: Store, other_store: Store
) -> None:
    name, _ = make_model(store, f"{proxy.host}/me/tokened2:v1")
    await collect(push_model(store, str(name), options()))
    proxy.script.require_token = True
    proxy.script.token_basic = (USER, PASSWORD)

    with pytest.raises(RegistryUnauthorizedError):
        await collect(pull_model(other_store, str(name), options()))
    await collect(pull_model(other_store, str(name), options(username=USER, password=PASSWORD)))

    assert other_store.read_manifest_bytes(name) == store.read_manifest_bytes(name)


async def test_unreadable_identity_key_is_a_clear_error(
    proxy: Proxy, other_store: Store, tmp_path: Path
) -> None:
    proxy.script.require_token = True
    proxy.script.token_verify_signature = True
    key_path = tmp_path / "broken_key"
    key_path.write_text("not a key")
    with pytest.raises(RegistryError, match="invalid ollama identity key"):
        await collect(pull_model(other_store, f"{proxy.host}/me/x:v1", options(key_path=key_path)))


async def test_no_signature_or_key_for_a_foreign_token_realm(
    proxy: Proxy, second_proxy: Proxy, store: Store, other_store: Store
) -> None:
    name, _ = make_model(store, f"{proxy.host}/me/foreign:v1")
    await collect(push_model(store, str(name), options()))
    proxy.script.require_token = True
    proxy.script.realm_host = second_proxy.host  # another origin issues the tokens

    await collect(pull_model(other_store, str(name), options()))

    assert second_proxy.script.token_requests
    assert all("authorization" not in r.headers for r in second_proxy.script.token_requests)
    assert not default_key_path().exists()
