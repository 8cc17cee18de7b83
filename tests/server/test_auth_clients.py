"""API keys through the official clients (`ollama`, `openai`, `anthropic`) and the `ollama`
CLI, against a real server on loopback whose model runners are scripted."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import ollama
import openai
import pytest

from ollamapy.auth import KeyFile, Scope
from tests.fakes import MODEL, Script, ScriptedServer, serve_scripted

ROLES: dict[str, tuple[set[Scope], list[str]]] = {
    "chat": ({Scope.GENERATE}, []),
    "chat-other": ({Scope.GENERATE}, ["other*"]),
    "embedder": ({Scope.EMBED}, []),
}
WRONG = "olk_" + "A" * 43
MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass
class Keyed:
    server: ScriptedServer
    secrets: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def ollama(self, key: str) -> ollama.Client:
        secret = self.secrets.get(key, key)
        return ollama.Client(host=self.url, headers={"Authorization": f"Bearer {secret}"})

    def openai(self, key: str) -> openai.OpenAI:
        secret = self.secrets.get(key, key)
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=secret, max_retries=0)

    def anthropic(self, key: str) -> anthropic.Anthropic:
        secret = self.secrets.get(key, key)
        return anthropic.Anthropic(base_url=self.url, api_key=secret, max_retries=0)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Keyed]:
    for server in serve_scripted(tmp_path, Script()):
        keys = KeyFile(tmp_path / "keys.json")
        yield Keyed(server, {name: keys.create(name, *ROLES[name])[0] for name in ROLES})


# -- ollama ---------------------------------------------------------------------------------------


def test_ollama_client_with_a_generate_key_chats_and_lists(keyed: Keyed) -> None:
    client = keyed.ollama("chat")
    assert client.chat(model=MODEL, messages=MESSAGES).message.content == "Hello there"
    assert [m.model for m in client.list().models] == [MODEL]


def test_ollama_client_reads_OLLAMA_API_KEY(keyed: Keyed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", keyed.secrets["chat"])
    reply = ollama.Client(host=keyed.url).chat(model=MODEL, messages=MESSAGES)
    assert reply.message.content == "Hello there"


@pytest.mark.parametrize(
    ("key", "status"),
    [(WRONG, 401), ("embedder", 403), ("chat-other", 403)],
    ids=["wrong-key", "wrong-scope", "wrong-model"],
)
def test_ollama_client_is_refused(keyed: Keyed, key: str, status: int) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        keyed.ollama(key).chat(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == status


def test_ollama_client_embed_needs_the_embed_scope(keyed: Keyed) -> None:
    assert len(keyed.ollama("embedder").embed(model=MODEL, input="x").embeddings) == 1
    with pytest.raises(ollama.ResponseError) as caught:
        keyed.ollama("chat").embed(model=MODEL, input="x")
    assert caught.value.status_code == 403
    assert "lacks the embed scope" in caught.value.error


# -- openai ---------------------------------------------------------------------------------------


def test_openai_client_with_a_generate_key_chats(keyed: Keyed) -> None:
    reply = keyed.openai("chat").chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Hello there"


def test_openai_client_wrong_key_is_an_authentication_error(keyed: Keyed) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        keyed.openai(WRONG).chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_api_key"


@pytest.mark.parametrize("key", ["embedder", "chat-other"], ids=["wrong-scope", "wrong-model"])
def test_openai_client_outside_the_key_is_permission_denied(keyed: Keyed, key: str) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        keyed.openai(key).chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]


def test_openai_embeddings_follow_the_scopes(keyed: Keyed) -> None:
    vectors = keyed.openai("embedder").embeddings.create(model=MODEL, input="x")
    assert len(vectors.data) == 1
    with pytest.raises(openai.PermissionDeniedError):
        keyed.openai("chat").embeddings.create(model=MODEL, input="x")


def test_openai_responses_follow_the_scopes(keyed: Keyed) -> None:
    """`/v1/responses` needs `generate`; refused keys get the SDK's own exceptions."""
    with pytest.raises(openai.AuthenticationError):
        keyed.openai(WRONG).responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.PermissionDeniedError):
        keyed.openai("embedder").responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.PermissionDeniedError):
        keyed.openai("chat-other").responses.create(model=MODEL, input="hi")
    try:
        reply = keyed.openai("chat").responses.create(model=MODEL, input="hi")
    except openai.NotFoundError:
        return  # no /v1/responses here yet: admitted, and the router answered 404
    assert reply.output_text == "Hello there"


# -- anthropic ------------------------------------------------------------------------------------


def _message(client: anthropic.Anthropic) -> anthropic.types.Message:
    return client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]


def test_anthropic_client_wrong_key_is_an_authentication_error(keyed: Keyed) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        _message(keyed.anthropic(WRONG))
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "unauthorized: invalid API key"},
    }


@pytest.mark.parametrize("key", ["embedder", "chat-other"], ids=["wrong-scope", "wrong-model"])
def test_anthropic_client_outside_the_key_is_permission_denied(keyed: Keyed, key: str) -> None:
    with pytest.raises(anthropic.PermissionDeniedError):
        _message(keyed.anthropic(key))


def test_anthropic_client_with_a_generate_key_is_admitted(keyed: Keyed) -> None:
    """The key passes (anthropic 2.x sends it as a bearer token; older SDKs as `x-api-key`,
    which `test_auth` covers); the answer is the route's own (its 404 on a branch without
    `/v1/messages`), never a 401 or 403."""
    try:
        reply = _message(keyed.anthropic("chat"))
    except anthropic.NotFoundError:
        return  # no /v1/messages here yet: admitted, and the router answered 404
    assert reply.content[0].type == "text" and reply.content[0].text == "Hello there"


def test_anthropic_client_sending_x_api_key_is_admitted_and_refused_as_scoped(
    keyed: Keyed,
) -> None:
    """What Anthropic's API takes (and older SDKs send): the key in `x-api-key` alone."""

    def client(key: str) -> anthropic.Anthropic:
        headers = {"x-api-key": keyed.secrets.get(key, key)}
        return anthropic.Anthropic(base_url=keyed.url, default_headers=headers, max_retries=0)

    with pytest.raises(anthropic.AuthenticationError):
        _message(client(WRONG))
    with pytest.raises(anthropic.PermissionDeniedError):
        _message(client("chat-other"))
    try:
        reply = _message(client("chat"))
    except anthropic.NotFoundError:
        return  # no /v1/messages here yet: admitted, and the router answered 404
    assert reply.content[0].type == "text" and reply.content[0].text == "Hello there"


# -- the ollama CLI -------------------------------------------------------------------------------


def ollama_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")} | env
    return subprocess.run(
        [sys.executable, "-m", "ollamapy", *args],
        capture_output=True,
        text=True,
        env=merged,
        timeout=60,
    )


def test_the_cli_sends_OLLAMA_API_KEY(keyed: Keyed) -> None:
    host = keyed.url.removeprefix("http://")
    listed = ollama_cli("list", OLLAMA_HOST=host, OLLAMA_API_KEY=keyed.secrets["chat"])
    assert listed.returncode == 0, listed.stderr
    assert MODEL in listed.stdout
    refused = ollama_cli("list", OLLAMA_HOST=host)
    assert refused.returncode == 1
    assert "unauthorized: this server needs an API key (set OLLAMA_API_KEY)" in refused.stderr
    scoped = ollama_cli("cp", MODEL, "x", OLLAMA_HOST=host, OLLAMA_API_KEY=keyed.secrets["chat"])
    assert scoped.returncode == 1
    assert "lacks the manage scope" in scoped.stderr
