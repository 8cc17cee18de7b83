"""`tool_choice: "required"` on the bundled SmolLM2, over many seeds: is every answer a valid call?

    python scripts/tool_choice_seeds.py [--seeds 100] [--clients 4] [--num-predict 96]

Starts `python -m ollamapy serve` on a free loopback port with a temporary store, creates
`smollm2:135m` as `scripts/bundle_models.py create` does (its tools-capable template), then
asks the same question with a two-function toolset under `seeds` different seeds, `clients`
at a time. Every answer must hold at least one call whose arguments validate against its
tool's JSON schema (jsonschema). Prints one line per seed and a summary; exits 1 if any
answer fails. The test suite runs a few seeds (tests/server/test_tool_choice_real.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundle_models import BUNDLED, fetch, own_template

MODEL = "smollm2:135m"
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(models: Path, clients: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env |= {
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(models),
        "OLLAMA_NUM_PARALLEL": str(clients),
    }
    server = subprocess.Popen([sys.executable, "-m", "ollamapy", "serve"], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("the server did not start")


def create_default_model(url: str) -> None:
    bundled = next(model for model in BUNDLED if model.key == "smollm2")
    body = bundled.modelfile.replace("{chatml-tools}", own_template("chatml-tools"))
    modelfile = f"FROM {fetch(bundled)}\n{body}"
    response = httpx.post(
        f"{url}/api/create",
        json={"model": MODEL, "modelfile": modelfile, "stream": False},
        timeout=300,
    )
    response.raise_for_status()


def one_seed(url: str, seed: int, num_predict: int) -> str | None:
    """None if the answer is a valid call, else what was wrong with it."""
    body = {
        "model": MODEL,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": "required",
        "stream": False,
        "options": {"seed": seed, "temperature": 0.8, "num_predict": num_predict},
    }
    message = httpx.post(f"{url}/api/chat", json=body, timeout=600).json().get("message", {})
    calls = message.get("tool_calls") or []
    if not calls:
        return f"no call: {json.dumps(message)}"
    for call in calls:
        function = call["function"]
        try:
            jsonschema.validate(function["arguments"], SCHEMAS[function["name"]])
        except (KeyError, jsonschema.ValidationError) as exc:
            return f"invalid call {json.dumps(function)}: {exc}"
    return None


def checked(url: str, seed: int, num_predict: int) -> str | None:
    """`one_seed`, printed as it finishes (a long run shows its progress)."""
    why = one_seed(url, seed, num_predict)
    print(f"seed {seed}: {'valid' if why is None else why}", flush=True)
    return why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--num-predict", type=int, default=96)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    seeds = range(args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(Path(tmp) / "models", args.clients)
        try:
            create_default_model(url)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda s: checked(url, s, args.num_predict), seeds))
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=60)
    failures = [why for why in results if why is not None]
    valid = args.seeds - len(failures)
    print(f"{valid}/{args.seeds} seeds answered with valid calls in {elapsed:.1f}s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
