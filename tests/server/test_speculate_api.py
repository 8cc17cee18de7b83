"""The `draft_max` option through the real app (scripted runner): where it comes from
(request, Modelfile PARAMETER, else the runner's default) and the drafted counts in the
final stats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import CHATML, MODEL, Script, ScriptedServer, serve_scripted


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedServer]:
    extra = CHATML + "\nPARAMETER draft_max 5\n"
    yield from serve_scripted(tmp_path_factory.mktemp("speculate"), Script(), extra)


@pytest.fixture
def server(live: ScriptedServer) -> ScriptedServer:
    live.script.requests.clear()
    live.script.drafts = (0, 0)
    return live


def generate(server: ScriptedServer, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, "prompt": "hi", "stream": False, **body}
    return httpx.post(f"{server.url}/api/generate", json=payload, timeout=30)


def test_the_modelfile_parameter_reaches_the_runner(server: ScriptedServer) -> None:
    assert generate(server).status_code == 200
    assert server.script.requests[-1].options.draft_max == 5


def test_a_request_option_overrides_it(server: ScriptedServer) -> None:
    assert generate(server, options={"draft_max": 0}).status_code == 200
    assert server.script.requests[-1].options.draft_max == 0


def test_a_negative_draft_max_is_a_400(server: ScriptedServer) -> None:
    response = generate(server, options={"draft_max": -2})
    assert response.status_code == 400
    assert "draft_max" in response.json()["error"]
    assert not server.script.requests


def test_the_final_stats_carry_the_drafted_counts(server: ScriptedServer) -> None:
    server.script.drafts = (40, 30)
    done = generate(server).json()
    assert (done["draft_count"], done["draft_accepted_count"]) == (40, 30)
    assert done["draft_acceptance_rate"] == 0.75
    streamed = httpx.post(
        f"{server.url}/api/chat",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    last = json.loads(streamed.text.splitlines()[-1])
    assert last["done"] and last["draft_count"] == 40


def test_no_drafts_no_draft_fields(server: ScriptedServer) -> None:
    assert not [key for key in generate(server).json() if key.startswith("draft")]


def test_ps_totals_the_drafted_counts_of_the_loaded_model(server: ScriptedServer) -> None:
    before = httpx.get(f"{server.url}/api/ps", timeout=30).json()["models"]
    drafted = sum(model.get("draft_count", 0) for model in before)
    accepted = sum(model.get("draft_accepted_count", 0) for model in before)
    server.script.drafts = (10, 4)
    generate(server)
    generate(server)
    (model,) = httpx.get(f"{server.url}/api/ps", timeout=30).json()["models"]
    assert model["draft_count"] == drafted + 20
    assert model["draft_accepted_count"] == accepted + 8
