"""Each `ollama` command against the fake API: what it sends and exactly what it prints."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ollamapy import OLLAMA_VERSION, __version__
from ollamapy.api.client import Client
from ollamapy.cli.commands import Deps
from ollamapy.cli.main import cli
from tests.cli.cli_fakes import DIGEST, FakeOllama, Outcome, ndjson, terminal

Invoke = Callable[..., Outcome]

TAGS = {
    "models": [
        {
            "name": "llama3.2:latest",
            "digest": DIGEST,
            "size": 2_019_393_189,
            "modified_at": "2024-05-18T12:00:00.123456789Z",
        },
        {
            "name": "smollm2:135m",
            "digest": "sha256:" + "9077fe9d2ae1" + "0" * 52,
            "size": 98_765_432,
            "modified_at": "2024-06-01T11:58:00Z",
        },
        {
            "name": "me/mine:latest",
            "digest": "sha256:" + "1234567890ab" + "0" * 52,
            "size": 512,
            "modified_at": "2024-06-01T10:59:00Z",
        },
    ]
}

LIST_GOLDEN = (
    "NAME               ID              SIZE      MODIFIED          \n"
    "llama3.2:latest    a80c4f17acd5    2.0 GB    2 weeks ago          \n"
    "smollm2:135m       9077fe9d2ae1    98 MB     2 minutes ago        \n"
    "me/mine:latest     1234567890ab    512 B     About an hour ago    \n"
)


def test_list_table(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("GET", "/api/tags")] = httpx.Response(200, json=TAGS)
    for command in ("list", "ls"):
        outcome = invoke(command)
        assert outcome.exit_code == 0, outcome.err
        assert outcome.out == LIST_GOLDEN


def test_list_filters_by_prefix_and_prints_header_when_empty(
    fake: FakeOllama, invoke: Invoke
) -> None:
    fake.routes[("GET", "/api/tags")] = httpx.Response(200, json=TAGS)
    assert invoke("list", "SMOL").out.splitlines()[1].startswith("smollm2:135m ")
    fake.routes[("GET", "/api/tags")] = httpx.Response(200, json={"models": []})
    assert invoke("list").out == "NAME    ID    SIZE    MODIFIED \n"


PS = {
    "models": [
        {
            "name": "smollm2:135m",
            "digest": DIGEST,
            "size": 271_000_000,
            "size_vram": 0,
            "context_length": 4096,
            "expires_at": "2024-06-01T12:04:30Z",
        },
        {
            "name": "gemma3:270m",
            "digest": DIGEST,
            "size": 1_000_000_000,
            "size_vram": 1_000_000_000,
            "context_length": 8192,
            "expires_at": "2318-01-01T00:00:00Z",
        },
        {
            "name": "big:latest",
            "digest": DIGEST,
            "size": 1_000,
            "size_vram": 520,
            "context_length": 2048,
            "expires_at": "2024-06-01T11:59:00Z",
        },
    ]
}

PS_GOLDEN = "".join(
    f"{line}\n"
    for line in (
        "NAME            ID              SIZE      PROCESSOR          CONTEXT    "
        "UNTIL              ",
        "smollm2:135m    a80c4f17acd5    271 MB    100% CPU           4096       "
        "4 minutes from now    ",
        "gemma3:270m     a80c4f17acd5    1 GB      100% GPU           8192       "
        "Forever               ",
        "big:latest      a80c4f17acd5    1 KB      48%/52% CPU/GPU    2048       "
        "Stopping...           ",
    )
)


def test_ps_table(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("GET", "/api/ps")] = httpx.Response(200, json=PS)
    outcome = invoke("ps")
    assert outcome.exit_code == 0, outcome.err
    assert outcome.out == PS_GOLDEN


SHOW: dict[str, Any] = {
    "license": "MIT License\nCopyright\nPermission is granted",
    "modelfile": "# Modelfile\nFROM x\n",
    "parameters": 'stop                           "<|im_end|>"\ntemperature                    0.2',
    "template": "{{ .Prompt }}",
    "system": "You are a cat.",
    "details": {"family": "llama", "parameter_size": "", "quantization_level": "Q4_1"},
    "model_info": {
        "general.architecture": "llama",
        "general.parameter_count": 134_515_008,
        "llama.context_length": 8192,
        "llama.embedding_length": 576,
        "tokenizer.ggml.tokens": ["a", "b", "c", "d", "e"],
    },
    "capabilities": ["completion"],
}

SHOW_GOLDEN = (
    "  Model\n"
    "    architecture        llama      \n"
    "    parameters          134.52M    \n"
    "    context length      8192       \n"
    "    embedding length    576        \n"
    "    quantization        Q4_1       \n"
    "\n"
    "  Capabilities\n"
    "    completion    \n"
    "\n"
    "  Parameters\n"
    '    stop           "<|im_end|>"    \n'
    "    temperature    0.2             \n"
    "\n"
    "  System\n"
    "    You are a cat.    \n"
    "\n"
    "  License\n"
    "    MIT License    \n"
    "    Copyright      \n"
    "    ...            \n"
    "\n"
)


def test_show_sections(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("POST", "/api/show")] = httpx.Response(200, json=SHOW)
    outcome = invoke("show", "smollm2")
    assert outcome.exit_code == 0, outcome.err
    assert outcome.out == SHOW_GOLDEN
    assert fake.bodies("POST", "/api/show") == [{"model": "smollm2", "verbose": False}]


def test_show_verbose_adds_metadata(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("POST", "/api/show")] = httpx.Response(200, json=SHOW)
    out = invoke("show", "smollm2", "-v").out
    assert "  Metadata\n" in out
    assert "tokenizer.ggml.tokens      [a b c ...+2 more]" in out


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--license", SHOW["license"] + "\n"),
        ("--modelfile", SHOW["modelfile"] + "\n"),
        ("--parameters", SHOW["parameters"] + "\n"),
        ("--template", SHOW["template"]),
        ("--system", SHOW["system"]),
    ],
)
def test_show_single_field(fake: FakeOllama, invoke: Invoke, flag: str, expected: str) -> None:
    fake.routes[("POST", "/api/show")] = httpx.Response(200, json=SHOW)
    assert invoke("show", "m", flag).out == expected


def test_show_refuses_two_fields(invoke: Invoke) -> None:
    outcome = invoke("show", "m", "--license", "--system")
    assert outcome.exit_code == 1
    assert "only one of '--license', '--modelfile'" in outcome.err


def test_show_missing_model(invoke: Invoke, fake: FakeOllama) -> None:
    fake.routes[("POST", "/api/show")] = httpx.Response(404, json={"error": "model 'x' not found"})
    outcome = invoke("show", "x")
    assert (outcome.exit_code, outcome.err) == (1, "Error: model 'x' not found\n")


def test_cp(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("POST", "/api/copy")] = httpx.Response(200)
    outcome = invoke("cp", "a", "b")
    assert outcome.out == "copied 'a' to 'b'\n"
    assert fake.bodies("POST", "/api/copy") == [{"source": "a", "destination": "b"}]


def test_rm_unloads_then_deletes_each(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("POST", "/api/generate")] = ndjson({"done": True, "done_reason": "unload"})
    fake.routes[("DELETE", "/api/delete")] = httpx.Response(200)
    outcome = invoke("rm", "a", "b")
    assert outcome.out == "deleted 'a'\ndeleted 'b'\n"
    assert fake.bodies("DELETE", "/api/delete") == [{"model": "a"}, {"model": "b"}]
    assert fake.bodies("POST", "/api/generate") == [{"model": "a", "keep_alive": 0, "stream": True}]


def test_stop_sends_keep_alive_zero_and_reports_missing(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("POST", "/api/generate")] = ndjson({"done": True})
    assert invoke("stop", "m").exit_code == 0
    assert fake.bodies("POST", "/api/generate") == [{"model": "m", "keep_alive": 0, "stream": True}]
    fake.routes[("POST", "/api/generate")] = httpx.Response(404, json={"error": "not found"})
    outcome = invoke("stop", "m")
    assert outcome.err == 'Error: couldn\'t find model "m" to stop\n'


def test_pull_shows_statuses_and_bars(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("POST", "/api/pull")] = ndjson(
        {"status": "pulling manifest"},
        {"status": "pulling abc", "digest": DIGEST, "total": 1000, "completed": 0},
        {"status": "pulling abc", "digest": DIGEST, "total": 1000, "completed": 1000},
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    )
    outcome = invoke("pull", "m", "--insecure")
    assert outcome.exit_code == 0, outcome.err
    assert fake.bodies("POST", "/api/pull") == [{"model": "m", "insecure": True, "stream": True}]
    for text in ("pulling manifest", "pulling a80c4f17acd5: 100%", "1 KB", "writing manifest"):
        assert text in outcome.err
    assert outcome.err.rstrip().endswith("success")


def test_push_prints_destination(fake: FakeOllama, invoke: Invoke) -> None:
    fake.routes[("POST", "/api/push")] = ndjson(
        {"status": "retrieving manifest"},
        {"status": "pushing", "digest": DIGEST, "total": 10, "completed": 10},
        {"status": "success"},
    )
    outcome = invoke("push", "me/mine")
    assert outcome.exit_code == 0, outcome.err
    assert outcome.out == "\nYou can find your model at:\n\n\thttps://ollama.com/me/mine\n"
    assert "pushing a80c4f17acd5..." in outcome.err


def test_version_without_a_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    term = terminal()
    deps = Deps(make_client=lambda: Client(transport=httpx.MockTransport(refuse)), terminal=term)
    result = CliRunner().invoke(cli, ["--version"], obj=deps)
    assert result.exit_code == 0
    assert isinstance(term.out, io.StringIO)
    assert term.out.getvalue() == (
        "Warning: could not connect to a running Ollama instance\n"
        f"Warning: client version is {OLLAMA_VERSION}\n"
    )


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (OLLAMA_VERSION, f"ollama version is {OLLAMA_VERSION}\n"),
        ("0.9.0", f"ollama version is 0.9.0\nWarning: client version is {OLLAMA_VERSION}\n"),
        (
            __version__,
            f"ollama version is {__version__}\nWarning: client version is {OLLAMA_VERSION}\n",
        ),
    ],
    ids=["same-api", "older-ollama", "server-answering-its-package-version"],
)
def test_version_with_a_server(
    fake: FakeOllama, invoke: Invoke, server: str, expected: str
) -> None:
    fake.routes[("GET", "/api/version")] = httpx.Response(200, json={"version": server})
    assert invoke("-v").out == expected


def test_commands_without_a_server_print_ollamas_message() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    deps = Deps(
        make_client=lambda: Client(transport=httpx.MockTransport(refuse)), terminal=terminal()
    )
    for args in (["list"], ["ps"], ["run", "m", "hi"], ["show", "m"], ["rm", "m"]):
        result = CliRunner().invoke(cli, args, obj=deps)
        assert result.exit_code == 1
        assert result.stderr == "Error: could not connect to ollama app, is it running?\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "Error: requires at least 1 arg(s), only received 0\n"),
        (["show"], "Error: accepts 1 arg(s), received 0\n"),
        (["cp", "a"], "Error: accepts 2 arg(s), received 1\n"),
        (["nonsense"], 'Error: unknown command "nonsense" for "ollama"\n'),
    ],
)
def test_argument_errors_read_like_cobra(invoke: Invoke, args: list[str], message: str) -> None:
    outcome = invoke(*args)
    assert (outcome.exit_code, outcome.err) == (1, message)


def test_help_lists_commands(invoke: Invoke) -> None:
    for args in ([], ["help"], ["--help"]):
        out = invoke(*args).out
        assert out.startswith("Large language model runner\n\nUsage:\n  ollama [flags]\n")
        assert "  list        List models\n" in out


# -- create ---------------------------------------------------------------------------------------


def create_routes(fake: FakeOllama, have_blob: bool = False) -> None:
    fake.routes[("HEAD", "/api/blobs/" + "sha256:" + "0" * 64)] = httpx.Response(404)
    fake.routes[("POST", "/api/create")] = ndjson(
        {"status": "parsing GGUF"},
        {"status": "using existing layer sha256:" + "1" * 64},
        {"status": "writing manifest"},
        {"status": "success"},
    )


def test_create_uploads_local_file_then_creates(
    fake: FakeOllama, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = b"GGUF tiny model"
    digest = "sha256:" + hashlib.sha256(weights).hexdigest()
    (tmp_path / "tiny.gguf").write_bytes(weights)
    (tmp_path / "Modelfile").write_text(
        "FROM ./tiny.gguf\n"
        'TEMPLATE """{{ .Prompt }}"""\n'
        "SYSTEM You are terse.\n"
        "PARAMETER temperature 0.2\n"
        'PARAMETER stop "<|end|>"\n'
        "MESSAGE user hi\n"
        "MESSAGE assistant hello\n"
        "LICENSE MIT\n"
    )
    fake.routes[("HEAD", f"/api/blobs/{digest}")] = httpx.Response(404)
    fake.routes[("POST", f"/api/blobs/{digest}")] = httpx.Response(201)
    create_routes(fake)
    monkeypatch.chdir(tmp_path)
    outcome = invoke("create", "mine", "-f", "Modelfile", "-q", "q4_K_M")
    assert outcome.exit_code == 0, outcome.err
    assert fake.bodies("POST", f"/api/blobs/{digest}") == [weights]
    assert fake.bodies("POST", "/api/create") == [
        {
            "model": "mine",
            "files": {"tiny.gguf": digest},
            "template": "{{ .Prompt }}",
            "system": "You are terse.",
            "parameters": {"temperature": 0.2, "stop": ["<|end|>"]},
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ],
            "license": ["MIT"],
            "quantize": "q4_K_M",
            "stream": True,
        }
    ]
    for status in (
        "gathering model components",
        f"copying file {digest} 100%",
        "parsing GGUF",
        "using existing layer sha256:",
        "writing manifest",
        "success",
    ):
        assert status in outcome.err


def test_create_skips_upload_of_known_blob_and_sends_from_for_names(
    fake: FakeOllama, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w.gguf").write_bytes(b"x")
    digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
    fake.routes[("HEAD", f"/api/blobs/{digest}")] = httpx.Response(200)
    create_routes(fake)
    (tmp_path / "Modelfile").write_text("FROM w.gguf\n")
    monkeypatch.chdir(tmp_path)
    assert invoke("create", "a").exit_code == 0
    assert not fake.bodies("POST", f"/api/blobs/{digest}")
    (tmp_path / "Other").write_text("FROM llama3.2\nSYSTEM hi\n")
    assert invoke("create", "b", "-f", "Other").exit_code == 0
    bodies: list[Any] = fake.bodies("POST", "/api/create")
    assert bodies[0]["files"] == {"w.gguf": digest}
    assert bodies[1] == {"model": "b", "from": "llama3.2", "system": "hi", "stream": True}


def test_create_from_safetensors_directory_keeps_module_folders(
    fake: FakeOllama, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "minilm"
    (model / "1_Pooling").mkdir(parents=True)
    contents = {
        "model.safetensors": b"weights",
        "config.json": b"{}",
        "modules.json": b"[]",
        "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    }
    digests = {}
    for name, data in contents.items():
        (model / name).write_bytes(data)
        digests[name] = "sha256:" + hashlib.sha256(data).hexdigest()
        fake.routes[("HEAD", f"/api/blobs/{digests[name]}")] = httpx.Response(200)
    create_routes(fake)
    (tmp_path / "Modelfile").write_text("FROM ./minilm\n")
    monkeypatch.chdir(tmp_path)
    assert invoke("create", "emb").exit_code == 0
    bodies: list[Any] = fake.bodies("POST", "/api/create")
    assert bodies[0]["files"] == digests


def test_create_from_safetensors_directory_sends_the_chat_template_file(
    fake: FakeOllama, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "llama"
    model.mkdir()
    contents = {
        "model.safetensors": b"weights",
        "config.json": b"{}",
        "tokenizer.json": b"{}",
        "chat_template.jinja": b"{{ messages }}",
    }
    for name, data in contents.items():
        (model / name).write_bytes(data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        fake.routes[("HEAD", f"/api/blobs/{digest}")] = httpx.Response(200)
    create_routes(fake)
    (tmp_path / "Modelfile").write_text("FROM ./llama\n")
    monkeypatch.chdir(tmp_path)
    assert invoke("create", "tiny").exit_code == 0
    bodies: list[Any] = fake.bodies("POST", "/api/create")
    assert set(bodies[0]["files"]) == set(contents)


def test_create_errors(invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("create", "a", "-f", "Nope").err == "Error: specified Modelfile wasn't found\n"
    (tmp_path / "Modelfile").write_text("FROM ./missing.gguf\n")
    assert "missing.gguf: no such file or directory" in invoke("create", "a").err


def test_create_server_error_mid_stream(
    fake: FakeOllama, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.routes[("POST", "/api/create")] = ndjson(
        {"status": "parsing GGUF"}, {"error": "invalid file magic"}
    )
    (tmp_path / "Modelfile").write_text("FROM base\n")
    monkeypatch.chdir(tmp_path)
    outcome = invoke("create", "a")
    assert (outcome.exit_code, outcome.err.splitlines()[-1]) == (1, "Error: invalid file magic")


# -- run, one shot ------------------------------------------------------------------------------


def run_routes(fake: FakeOllama, capabilities: tuple[str, ...] = ("completion",)) -> None:
    fake.routes[("POST", "/api/show")] = httpx.Response(
        200, json={"capabilities": list(capabilities), "details": {}}
    )
    fake.routes[("POST", "/api/generate")] = ndjson(
        {"response": "Hello"},
        {"response": " there"},
        {
            "response": "",
            "done": True,
            "total_duration": 1_234_567_891,
            "load_duration": 45_100_000,
            "prompt_eval_count": 8,
            "prompt_eval_duration": 20_000_000,
            "eval_count": 2,
            "eval_duration": 500_000_000,
        },
    )


def test_run_with_prompt_answers_once(fake: FakeOllama, invoke: Invoke) -> None:
    run_routes(fake)
    outcome = invoke("run", "m", "say", "hi", tty=True)
    assert outcome.exit_code == 0, outcome.err
    assert outcome.out == "Hello there\n\n"
    assert fake.bodies("POST", "/api/generate") == [
        {"model": "m", "prompt": "say hi", "stream": True}
    ]


def test_run_appends_piped_stdin_to_prompt(fake: FakeOllama, invoke: Invoke) -> None:
    run_routes(fake)
    outcome = invoke("run", "m", "summarize", stdin="some text\n", tty=False)
    assert outcome.out == "Hello there\n\n"
    body = fake.bodies("POST", "/api/generate")[0]
    assert body["prompt"] == "some text\n summarize"


def test_run_flags_reach_the_request(fake: FakeOllama, invoke: Invoke) -> None:
    run_routes(fake)
    outcome = invoke(
        "run", "m", "hi", "--format", "json", "--keepalive", "10m", "--think=low", "--verbose"
    )
    assert outcome.exit_code == 0, outcome.err
    body = fake.bodies("POST", "/api/generate")[0]
    assert body == {
        "model": "m",
        "prompt": "hi",
        "format": "json",
        "keep_alive": "10m",
        "think": "low",
        "stream": True,
    }
    assert outcome.err == (
        "total duration:       1.234567891s\n"
        "load duration:        45.1ms\n"
        "prompt eval count:    8 token(s)\n"
        "prompt eval duration: 20ms\n"
        "prompt eval rate:     400.00 tokens/s\n"
        "eval count:           2 token(s)\n"
        "eval duration:        500ms\n"
        "eval rate:            4.00 tokens/s\n"
    )


def test_run_rejects_bad_think_and_keepalive(invoke: Invoke) -> None:
    assert (
        'invalid value for --think: "maybe" (must be true, false, high, medium, low, or max)'
        in invoke("run", "m", "hi", "--think=maybe").err
    )
    assert "invalid duration" in invoke("run", "m", "hi", "--keepalive", "soon").err


def test_run_pulls_a_missing_model_first(fake: FakeOllama, invoke: Invoke) -> None:
    run_routes(fake)
    answers = iter([httpx.Response(404, json={"error": "model 'm' not found"})])
    shown = fake.routes[("POST", "/api/show")]
    fake.routes[("POST", "/api/show")] = lambda body: next(answers, shown)
    fake.routes[("POST", "/api/pull")] = ndjson(
        {"status": "pulling manifest"}, {"status": "success"}
    )
    outcome = invoke("run", "m", "hi")
    assert outcome.exit_code == 0, outcome.err
    assert [p for m, p, _ in fake.calls if m == "POST"] == [
        "/api/show",
        "/api/pull",
        "/api/show",
        "/api/generate",
    ]
    assert "pulling manifest" in outcome.err


def test_run_thinking_model_shows_thinking(fake: FakeOllama, invoke: Invoke) -> None:
    run_routes(fake, ("completion", "thinking"))
    fake.routes[("POST", "/api/generate")] = ndjson(
        {"thinking": "hmm"}, {"response": "yes"}, {"done": True}
    )
    outcome = invoke("run", "m", "q")
    assert outcome.out == "Thinking...\nhmm\n...done thinking.\n\nyes\n\n"
    assert fake.bodies("POST", "/api/generate")[0]["think"] is True
    assert invoke("run", "m", "q", "--hidethinking").out.endswith("yes\n\n")


@pytest.mark.parametrize(
    ("flag", "think"),
    [("--think", True), ("--think=false", False), ("--think=max", "max"), ("--think=high", "high")],
)
def test_run_think_flag_reaches_the_request(
    fake: FakeOllama, invoke: Invoke, flag: str, think: bool | str
) -> None:
    run_routes(fake, ("completion", "thinking"))
    assert invoke("run", "m", "q", flag).exit_code == 0
    assert fake.bodies("POST", "/api/generate")[-1]["think"] == think


def test_run_embedding_model_prints_vector(fake: FakeOllama, invoke: Invoke) -> None:
    run_routes(fake, ("embedding",))
    fake.routes[("POST", "/api/embed")] = httpx.Response(200, json={"embeddings": [[0.5, -1.0]]})
    assert invoke("run", "e", "hello").out == "[0.5,-1.0]\n"


def test_run_error_mid_stream(fake: FakeOllama, invoke: Invoke) -> None:
    run_routes(fake)
    fake.routes[("POST", "/api/generate")] = ndjson({"response": "a"}, {"error": "boom"})
    outcome = invoke("run", "m", "hi")
    assert (outcome.exit_code, outcome.err.splitlines()[-1]) == (1, "Error: boom")
