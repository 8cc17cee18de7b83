"""`/api/create` refuses a TEMPLATE that does not parse, as Ollama's create does.

The template is checked before anything is written: a bad one is a 400 with Ollama's
`template error: template: :LINE: ...` (its create parses the template as an unnamed Go
template), whichever request form carried it, streamed or not, and the store is left
exactly as it was, with no manifest and no new blob.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ggufs import CHATML_JINJA, write_tiny_gguf
from tests.server.conftest import LiveServer

UNCLOSED = "{{ if .System }}unclosed"
UNCLOSED_ERROR = "template error: template: :1: unexpected EOF"


@pytest.fixture
def tiny_digest(live_server: LiveServer, tmp_path: Path) -> str:
    """A small GGUF model uploaded as a blob (the only thing in the store)."""
    path = write_tiny_gguf(tmp_path / "tiny.gguf", chat_template=CHATML_JINJA)
    return live_server.client().create_blob(path)


def store_files(server: LiveServer) -> set[Path]:
    root = server.models_dir
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def create(server: LiveServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/api/create", json=body, timeout=60)


def modelfile_form(digest: str, template: str, stream: bool, name: str = "m") -> dict[str, Any]:
    modelfile = f'FROM @{digest}\nTEMPLATE """{template}"""\n'
    return {"model": name, "modelfile": modelfile, "stream": stream}


def template_field_form(
    digest: str, template: str, stream: bool, name: str = "m"
) -> dict[str, Any]:
    return {
        "model": name,
        "files": {"model.gguf": digest},
        "template": template,
        "stream": stream,
    }


FORMS = [
    pytest.param(modelfile_form, False, id="modelfile"),
    pytest.param(modelfile_form, True, id="modelfile-streamed"),
    pytest.param(template_field_form, False, id="template-field"),
    pytest.param(template_field_form, True, id="template-field-streamed"),
]


@pytest.mark.parametrize(("form", "stream"), FORMS)
def test_a_template_that_does_not_parse_is_refused_and_nothing_is_written(
    live_server: LiveServer, tiny_digest: str, form: Any, stream: bool
) -> None:
    before = store_files(live_server)
    response = create(live_server, form(tiny_digest, UNCLOSED, stream))
    assert response.status_code == 400
    assert response.json() == {"error": UNCLOSED_ERROR}
    assert store_files(live_server) == before
    assert not list((live_server.models_dir / "manifests").rglob("*"))
    assert live_server.client().list().models == []


@pytest.mark.parametrize(
    ("template", "error"),
    [
        pytest.param("{{ .Prompt }", 'unexpected "}" in operand', id="unclosed-action"),
        pytest.param("ok\n{{ end }}", "unexpected {{end}}", id="stray-end"),
        pytest.param("{{ .Prompt | nosuchfunc }}", 'function "nosuchfunc" not defined', id="func"),
        pytest.param(
            "{{" + "(" * 5000 + ".A" + ")" * 5000 + "}}", "max expression depth exceeded", id="deep"
        ),  # Go's words (its limit is 10000; ours 100: see template/parse.py MAX_DEPTH)
    ],
)
def test_the_message_names_the_line_and_the_fault(
    live_server: LiveServer, tiny_digest: str, template: str, error: str
) -> None:
    response = create(live_server, template_field_form(tiny_digest, template, False))
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("template error: template: :")
    assert error in message


def test_a_bad_template_over_an_existing_model_leaves_it_untouched(
    live_server: LiveServer, tiny_digest: str
) -> None:
    good = create(live_server, template_field_form(tiny_digest, "{{ .Prompt }}", False))
    assert good.status_code == 200, good.text
    before = store_files(live_server)
    body = {"model": "m", "from": "m", "template": UNCLOSED, "stream": False}
    response = create(live_server, body)
    assert response.status_code == 400
    assert response.json() == {"error": UNCLOSED_ERROR}
    assert store_files(live_server) == before
    assert live_server.client().show("m").template == "{{ .Prompt }}"


def test_a_template_that_parses_is_stored(live_server: LiveServer, tiny_digest: str) -> None:
    template = "{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}"
    response = create(live_server, modelfile_form(tiny_digest, template, False))
    assert response.status_code == 200, response.text
    assert live_server.client().show("m").template == template
