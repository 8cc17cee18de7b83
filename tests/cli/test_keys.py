"""`ollama keys create|list|revoke`: the key printed once, the file beside the store."""

from __future__ import annotations

import io
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollamapy.auth import KeyFile, Scope, hash_key
from ollamapy.cli.commands import Deps
from ollamapy.cli.main import cli
from tests.cli.cli_fakes import NOW, Outcome, terminal


def ollama(*args: str, now_offset: timedelta = timedelta()) -> Outcome:
    term = terminal(None, False)
    deps = Deps(now=lambda: NOW + now_offset, terminal=term)
    result = CliRunner().invoke(cli, list(args), obj=deps, catch_exceptions=False)
    assert isinstance(term.out, io.StringIO) and isinstance(term.err, io.StringIO)
    return Outcome(result, term.out.getvalue() + result.stdout, term.err.getvalue() + result.stderr)


@pytest.fixture
def key_file(hermetic_env: Path) -> KeyFile:
    """Beside the store: OLLAMA_MODELS is $HOME/.ollama/models, so ~/.ollama/keys.json."""
    return KeyFile(hermetic_env / ".ollama" / "keys.json")


def test_create_prints_the_key_once_alone_on_stdout(key_file: KeyFile) -> None:
    created = ollama("keys", "create", "ci", "--scope", "generate,embed", "--models", "qwen*,smol*")
    assert created.result.exit_code == 0, created.err
    secret = created.out.strip()
    assert secret.startswith("olk_") and "\n" not in secret
    assert "Created API key 'ci'" in created.err and "not shown again" in created.err
    key = key_file.load().find(secret)
    assert key is not None
    assert key.scopes == {Scope.GENERATE, Scope.EMBED} and key.models == ("qwen*", "smol*")
    assert key.digest == hash_key(secret) and secret not in key_file.path.read_text()
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600


def test_create_with_an_expiry_and_the_default_scope(key_file: KeyFile) -> None:
    assert ollama("keys", "create", "tmp", "--expires", "30d").result.exit_code == 0
    key = key_file.load().keys[0]
    assert key.scopes == {Scope.ALL}
    assert key.expires_at is not None and key.expires_at - key.created_at == timedelta(days=30)


def test_list_shows_names_hints_scopes_models_and_expiry_never_keys(key_file: KeyFile) -> None:
    secret = ollama("keys", "create", "ci", "--scope", "embed", "--models", "bge*").out.strip()
    ollama("keys", "create", "tmp", "--expires", "1h")
    listed = ollama("keys", "list", now_offset=timedelta(hours=2))
    lines = listed.out.splitlines()
    assert lines[0].split() == ["NAME", "KEY", "SCOPES", "MODELS", "CREATED", "EXPIRES"]
    assert lines[1].split()[:4] == ["ci", secret[:8] + "...", "embed", "bge*"]
    assert lines[1].rstrip().endswith("Never")
    assert "expired About an hour ago" in lines[2]
    assert secret not in listed.out


def test_revoke_removes_a_key_and_an_unknown_one_is_an_error(key_file: KeyFile) -> None:
    ollama("keys", "create", "ci")
    revoked = ollama("keys", "revoke", "ci")
    assert revoked.out == "revoked API key 'ci'\n"
    assert key_file.load().keys == ()
    again = ollama("keys", "revoke", "ci")
    assert again.result.exit_code == 1
    assert "Error: no key named 'ci'" in again.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "create", "ci", "--scope", "root"), "unknown scope 'root'"),
        (("keys", "create", "ci", "--expires", "soon"), "invalid"),
        (("keys", "create", "a b"), "invalid key name"),
        (("keys", "create"), "accepts 1 arg(s), received 0"),
    ],
    ids=["bad-scope", "bad-expiry", "bad-name", "no-name"],
)
def test_bad_arguments_are_one_error_line(
    key_file: KeyFile, args: tuple[str, ...], message: str
) -> None:
    outcome = ollama(*args)
    assert outcome.result.exit_code == 1
    assert message in outcome.err and "Traceback" not in outcome.err
    assert not key_file.path.exists()


def test_a_duplicate_name_is_refused(key_file: KeyFile) -> None:
    ollama("keys", "create", "ci")
    again = ollama("keys", "create", "ci")
    assert again.result.exit_code == 1 and "already exists" in again.err
    assert len(key_file.load().keys) == 1


def test_keys_help_lists_the_subcommands() -> None:
    out = ollama("keys").out
    assert "create" in out and "list" in out and "revoke" in out
    assert "keys" in ollama("--help").out


def test_version_from_a_server_that_needs_a_key_says_so() -> None:
    import httpx

    from ollamapy import OLLAMA_VERSION
    from ollamapy.api.client import Client

    def refuse(request: httpx.Request) -> httpx.Response:
        message = "unauthorized: this server needs an API key (set OLLAMA_API_KEY)"
        return httpx.Response(401, json={"error": message})

    term = terminal(None, False)
    deps = Deps(make_client=lambda: Client(transport=httpx.MockTransport(refuse)), terminal=term)
    result = CliRunner().invoke(cli, ["--version"], obj=deps)
    assert result.exit_code == 0
    assert isinstance(term.out, io.StringIO)
    assert term.out.getvalue() == (
        "Warning: unauthorized: this server needs an API key (set OLLAMA_API_KEY)\n"
        f"Warning: client version is {OLLAMA_VERSION}\n"
    )
